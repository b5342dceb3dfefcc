//go:build integration

// Package crash kills slipway serve, and separately the local runtime's
// supervisors, at each named crash point (internal/crashpoint) of every
// flow, starts serve again, and checks that slipway converges to what its
// ledger says with nothing done twice and nothing left behind, while the
// environments keep serving.
package crash

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// only limits the cases to those whose SLIPWAY_CRASH_AT it names
// (comma-separated), to look at one point: go test -tags integration
// -run TestCrashPoints/release ./test/crash -args -only=promote.tags
var only = flag.String("only", "", "run only the cases of these crash points (comma-separated)")

func TestMain(m *testing.M) {
	local.SupervisorMain()
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// A flow a case starts, for the crash point to be reached in.
const (
	push     = "push"     // a commit to master: build, dev, staging
	release  = "release"  // slipway release: staging's commit to prod
	rollback = "rollback" // slipway rollback of prod
	scaleUp  = "scale-up" // slipway scale prod=3
	scaleDn  = "scale-down"
	// badRelease pushes a commit whose replicas exit at start on prod
	// only, and releases it once staging verified it: the rollout fails
	// and the release is undone.
	badRelease = "bad-release"
)

type crashCase struct {
	at   string // SLIPWAY_CRASH_AT
	flow string
}

// supervisor says whether the case kills an environment's supervisor
// (ENV/NAME) rather than serve, and which environment's.
func (c crashCase) supervisor() (env string, ok bool) {
	env, _, ok = strings.Cut(c.at, "/")
	return env, ok
}

// slow names the cases whose push adds a test that takes slowTest: the
// crash comes while it runs, and a test process that outlived serve is
// still there when serve starts again.
var slow = map[string]bool{"build.test": true}

const slowTest = 20 * time.Second

// scenarios: each runs its cases one after another on a slipway of its
// own (one baseline, then a crash per case); scenarios run in parallel.
var scenarios = []struct {
	name  string
	smoke bool // dev runs the sample app's smoke test (25 s of a busy machine per push)
	cases []crashCase
}{
	{"verify", false, []crashCase{
		{"deploy.rolledout", push}, {"deploy.healthy", push}, {"deploy.smoke", push}, {"deploy.tags", push},
		{"tag.env", push}, {"pipeline.final", push}, {"pipeline.finished", push}, {"chain.image", push},
		{"notify.delivered", push},
	}},
	{"supervisor", false, []crashCase{
		{"prod/supervisor.replica.start", release}, {"prod/supervisor.replica.ready", rollback},
		{"prod/supervisor.replica.drain", release}, {"prod/supervisor.replica.stopped", rollback},
		{"prod/supervisor.serving", release}, {"dev/supervisor.replica.ready", push},
	}},
	// dev's supervisor killed at each of its other points, in a push's
	// automatic deploy.
	{"devsupervisor", false, []crashCase{
		{"dev/supervisor.replica.start", push}, {"dev/supervisor.replica.drain", push},
		{"dev/supervisor.replica.stopped", push}, {"dev/supervisor.serving", push},
	}},
	{"build", false, []crashCase{
		{"fetch.head", push}, {"build.modules", push}, {"build.test", push}, {"build.compile", push},
		{"build.image", push}, {"registry.pushed", push}, {"registry.pushed.tag#1", push},
	}},
	{"push", false, []crashCase{
		{"registry.pushed.tag#2", push}, {"registry.pushed.tag#3", push}, {"build.record", push},
		{"build.recorded", push}, {"deploy.recorded", push}, {"deploy.image", push}, {"deploy.rollout", push},
	}},
	{"release", false, []crashCase{
		{"release.recorded", release}, {"rollback.recorded", rollback},
		{"promote.tags", release}, {"branch.move", rollback},
		{"promote.tag.release", release}, {"promote.rolledout", rollback},
		{"promote.git.tag", release}, {"pipeline.final", rollback},
		{"promote.branch", release}, {"promote.rollout", rollback},
		{"tag.env", release}, {"change.recorded", scaleUp}, {"change.rollout", scaleDn},
		{"undo", badRelease},
	}},
}

// TestCrashPoints runs every scenario. Together they reach every point
// of crashpoint.Points (TestEveryPointIsCovered).
func TestCrashPoints(t *testing.T) {
	t.Parallel() // beside TestKubernetesCrashPoints
	slipwayBinary(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			started := time.Now()
			w := newWorld(t, sc.smoke)
			s := &scenario{w: w, prodHist: []string{w.baseline(sc.cases, started)}}
			runCases(t, sc.cases, s.run)
			t.Logf("scenario %s: %d crashes in %s", sc.name, len(sc.cases), time.Since(started).Round(time.Second))
		})
	}
}

// baseline starts serve and waits until the first commit, c0, runs on
// dev, staging and prod; when cases release, it pushes c1 and waits until
// staging runs it, so that there is something to release. It returns c0.
func (w *world) baseline(cases []crashCase, started time.Time) string {
	w.t.Helper()
	w.startServe()
	c0 := gitOut(w.ws.Bare, "rev-parse", "master")
	w.waitFor("c0 on dev, staging and prod", func() bool {
		st, ok := w.status()
		return ok && runs(st, "dev", c0) && runs(st, "staging", c0) && runs(st, "prod", c0)
	})
	w.t.Logf("baseline (c0 on dev, staging, prod) after %s", time.Since(started).Round(time.Second))
	if slices.ContainsFunc(cases, func(c crashCase) bool { return c.flow == release }) {
		c1 := w.push("c1")
		w.waitFor("c1 on staging", func() bool { st, ok := w.status(); return ok && runs(st, "staging", c1) })
	}
	return c0
}

// runCases runs each of cases that -only selects, one after another,
// until one fails.
func runCases(t *testing.T, cases []crashCase, run func(crashCase)) {
	t.Helper()
	for _, c := range cases {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), c.at) {
			continue
		}
		run(c)
		if t.Failed() {
			return
		}
	}
}

// TestEveryPointIsCovered checks that the scenarios (local and
// Kubernetes) reach every crash point, so that a point added to the code is added here too.
func TestEveryPointIsCovered(t *testing.T) {
	covered := map[string]bool{}
	var all [][]crashCase
	for _, sc := range scenarios {
		all = append(all, sc.cases)
	}
	for _, sc := range kubeScenarios {
		all = append(all, sc.cases)
	}
	for _, cases := range all {
		for _, c := range cases {
			name := c.at
			if _, n, ok := strings.Cut(name, "/"); ok {
				name = n
			}
			name, _, _ = strings.Cut(name, "#")
			covered[name] = true
		}
	}
	for _, p := range crashpoint.Points {
		if !covered[p.Name] && !notCovered[p.Name] {
			t.Errorf("no scenario crashes at %s (%s)", p.Name, p.Where)
		}
	}
}

// notCovered are the points no scenario reaches yet.
var notCovered = map[string]bool{}

type scenario struct {
	w        *world
	prodHist []string // the commits prod ran, in order, without repeats
	replicas int
}

// run arms c's crash point, starts c's flow, waits for the crash, starts
// serve again when it was serve that died, waits until the flow's end
// state, and checks.
func (s *scenario) run(c crashCase) {
	w, t := s.w, s.w.t
	t.Helper()
	began := time.Now()
	ctx := context.Background()
	supervisorEnv, inSupervisor := c.supervisor()
	os.Remove(w.record)
	if err := os.WriteFile(w.crashAt, []byte(c.at), 0o644); err != nil {
		t.Fatal(err)
	}
	lastID := w.lastDeploymentID()
	loads := map[string]*load{"dev": startLoad(w.urls["dev"], 2), "prod": startLoad(w.urls["prod"], 4)}

	// Start the flow, and say what it must end with.
	st, _ := w.status()
	prod := deref(envOf(st, "prod").Commit)
	var done func(pipeline.Status) bool
	var pushed string // the commit a push flow pushed
	switch c.flow {
	case push:
		if slow[c.at] {
			test := fmt.Sprintf("package main\n\nimport (\n\t\"testing\"\n\t\"time\"\n)\n\nfunc TestSlow(t *testing.T) { time.Sleep(%d * time.Second) }\n", int(slowTest.Seconds()))
			if err := os.WriteFile(filepath.Join(w.ws.Clone, "zz_slow_test.go"), []byte(test), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		commit := w.push("crash at " + c.at)
		pushed = commit
		done = func(st pipeline.Status) bool {
			return runs(st, "dev", commit) && runs(st, "staging", commit) && runs(st, "prod", prod)
		}
	case release:
		want := deref(envOf(st, "staging").Commit)
		if want == prod {
			t.Fatalf("%s: nothing to release: staging and prod run %s", c.at, prod[:7])
		}
		_, err := w.client().Release(ctx, "", api.ReleaseRequest{})
		s.apiErr(c, err)
		done = func(st pipeline.Status) bool { return runs(st, "prod", want) }
	case rollback:
		if len(s.prodHist) < 2 {
			t.Fatalf("%s: prod has run nothing before %s to roll back to", c.at, prod[:7])
		}
		want := s.prodHist[len(s.prodHist)-2]
		_, err := w.client().Rollback(ctx, "", api.RollbackRequest{})
		s.apiErr(c, err)
		done = func(st pipeline.Status) bool { return runs(st, "prod", want) }
	case badRelease:
		bad := "package main\n\nimport \"os\"\n\nfunc init() {\n\tif os.Getenv(\"CRASH_PROD\") != \"\" {\n\t\tos.Exit(3)\n\t}\n}\n"
		if err := os.WriteFile(filepath.Join(w.ws.Clone, "zz_prod_only.go"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		commit := w.push("fails on prod")
		w.waitFor("the commit failing on prod verified on staging", func() bool { st, ok := w.status(); return ok && runs(st, "staging", commit) })
		_, err := w.client().Release(ctx, "", api.ReleaseRequest{})
		s.apiErr(c, err)
		done = func(st pipeline.Status) bool { return runs(st, "prod", prod) }
	case scaleUp, scaleDn:
		n := 3
		if c.flow == scaleDn {
			n = 2
		}
		_, err := w.client().Scale(ctx, "", "prod", n)
		s.apiErr(c, err)
		done = func(st pipeline.Status) bool {
			return runs(st, "prod", prod) && envOf(st, "prod").Replicas.Desired == n
		}
	}

	// The crash.
	w.waitFor("the crash at "+c.at, func() bool { _, err := os.Stat(w.record); return err == nil })
	crashed := time.Now()
	if err := os.WriteFile(w.crashAt, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !inSupervisor {
		w.waitFor("serve to die", func() bool { ok, _ := w.serveExited(); return ok })
		_, err := w.serveExited()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("%s: serve ended with %v, want SIGKILL", c.at, err)
		}
		w.serve = nil
		w.startServe()
		// What the killed serve had started must be gone now, not only
		// once the flow is done (a build's test, say, outliving it).
		time.Sleep(2 * time.Second)
		var p problems
		w.checkProcesses(&p)
		for _, msg := range p {
			t.Errorf("%s (%s), after the restart: %s", c.at, c.flow, msg)
		}
	}

	// Convergence.
	w.waitFor("the end of the "+c.flow+" after the crash at "+c.at, func() bool {
		st, ok := w.status()
		if !ok || !done(st) {
			return false
		}
		for _, e := range envs {
			if envOf(st, e).Rollout != nil {
				return false
			}
		}
		return w.inFlight() == 0
	})
	converged := time.Now()
	var p problems
	for env, l := range loads {
		ok, failed, first := l.end()
		switch {
		case ok == 0:
			p.add("%s: no request succeeded", env)
		case failed > 0 && inSupervisor && env == supervisorEnv:
			t.Logf("%s: %d requests to %s failed while its supervisor was down (%d succeeded; first: %v)", c.at, failed, env, ok, first)
		case failed > 0:
			p.add("%s: %d requests failed (first: %v), %d succeeded", env, failed, first, ok)
		}
	}
	w.checkTruth(&p)
	w.checkLedger(&p)
	w.checkLeftovers(&p)
	s.checkOnce(&p, c, lastID)
	if c.at == "notify.delivered" && len(w.hooks.resent()) == 0 {
		p.add("no notification was sent again after the crash between its delivery and its record")
	}
	if inSupervisor && c.flow == push {
		// The deploy that was rolling out when the supervisor died failed
		// as deploy.ErrUnavailable and was tried again.
		want := fmt.Sprintf("deploy %s to %s: supervisor", pushed[:7], supervisorEnv)
		if !slices.ContainsFunc(strings.Split(w.serveOut.String(), "\n"), func(l string) bool {
			return strings.Contains(l, "step failed, trying again") && strings.Contains(l, want) &&
				strings.Contains(l, "the runtime stopped answering")
		}) {
			p.add("serve's log does not say that %q failed as the runtime stopped answering and was tried again", want)
		}
	}
	for _, msg := range p {
		t.Errorf("%s (%s): %s", c.at, c.flow, msg)
	}
	if t.Failed() {
		t.Logf("serve's log:\n%s", w.serveLog())
	}
	st, _ = w.status()
	if now := deref(envOf(st, "prod").Commit); now != s.prodHist[len(s.prodHist)-1] {
		s.prodHist = append(s.prodHist, now)
	}
	t.Logf("%-32s %-10s crashed after %5.1fs, converged %5.1fs later", c.at, c.flow,
		crashed.Sub(began).Seconds(), converged.Sub(crashed).Seconds())
}

// apiErr accepts the error of an API call that the crash cut short: serve
// died at the case's point before it answered. That is not only a point
// the handler reaches (release.recorded, say): the handler hands the
// rollout to a goroutine, which may reach its first point (promote.tags,
// change.rollout) before the handler has written its answer.
func (s *scenario) apiErr(c crashCase, err error) {
	if err == nil {
		return
	}
	_, inSupervisor := c.supervisor()
	if _, statErr := os.Stat(s.w.record); inSupervisor || statErr != nil {
		s.w.t.Fatalf("%s: %s: %v", c.at, c.flow, err)
	}
	s.w.t.Logf("%s: %s: the crash cut the call short: %v", c.at, c.flow, err)
}

// checkOnce checks that the case's flow made one deployment (a release,
// rollback or scale) or, for a push, at most one interrupted and one
// finished deployment per automatic environment.
func (s *scenario) checkOnce(p *problems, c crashCase, after int64) {
	rows := s.w.deploymentsAfter(after)
	count := map[string]int{}
	for _, r := range rows {
		count[r.Env+" "+string(r.Kind)]++
	}
	want := map[string]int{}
	switch c.flow {
	case release:
		want["prod release"] = 1
	case badRelease:
		// The commit that fails on prod is pushed first: dev and staging
		// take it once each.
		want["prod release"], want["dev deploy"], want["staging deploy"] = 1, 1, 1
	case rollback:
		want["prod rollback"] = 1
	case scaleUp, scaleDn:
		want["prod scale"] = 1
	case push:
		for k, n := range count {
			if n > 2 || k == "prod deploy" {
				p.add("%d deployments %s for one push", n, k)
			}
		}
		return
	}
	for k, n := range count {
		if n != want[k] {
			p.add("%d deployments %s, want %d: %v", n, k, want[k], rows)
		}
	}
}

func (w *world) lastDeploymentID() int64 {
	rows := w.deploymentsAfter(0)
	if len(rows) == 0 {
		return 0
	}
	return rows[len(rows)-1].ID
}

// inFlight counts the deployments still pending or rolling.
func (w *world) inFlight() int {
	n := 0
	for _, d := range w.deploymentsAfter(0) {
		if !d.State.Final() {
			n++
		}
	}
	return n
}

type row struct {
	ID    int64
	Env   string
	Kind  ledger.DeploymentKind
	State ledger.DeploymentState
}

func (r row) String() string { return fmt.Sprintf("%d %s %s %s", r.ID, r.Env, r.Kind, r.State) }

func (w *world) deploymentsAfter(id int64) []row {
	ctx := context.Background()
	store, err := ledger.Open(ctx, w.ws.DataDir+"/"+ledger.FileName)
	if err != nil {
		w.t.Fatal(err)
	}
	defer store.Close()
	rs, err := store.DB().QueryContext(ctx, `SELECT id, env, kind, state FROM deployments WHERE id > ? ORDER BY id`, id)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.ID, &r.Env, &r.Kind, &r.State); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func gitErr(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
