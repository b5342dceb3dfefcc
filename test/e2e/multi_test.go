//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// multiApp is one app of TestMultiAppEndToEnd: a demo workspace of its own
// (bare repository and clone) and the addresses of its environments.
type multiApp struct {
	name string
	ws   demo.Workspace
	envs []string          // in configuration order; the last is final
	urls map[string]string // environment → http://address
}

// push commits a change in the app's clone and pushes it to master.
func (a *multiApp) push(t *testing.T, msg string, change func(dir string)) string {
	t.Helper()
	change(a.ws.Clone)
	git(t, a.ws.Clone, "add", "--all")
	git(t, a.ws.Clone, "commit", "-q", "-m", msg)
	git(t, a.ws.Clone, "push", "-q", "origin", "HEAD:master")
	return git(t, a.ws.Clone, "rev-parse", "HEAD")
}

// prodOnlyFailure is a file that makes the app exit at start where
// E2E_PROD is set (prod only): such a commit passes its tests, builds, and
// runs on dev and staging, and its replicas never become ready on prod.
const prodOnlyFailure = "package main\n\nimport \"os\"\n\nfunc init() {\n\tif os.Getenv(\"E2E_PROD\") != \"\" {\n\t\tos.Exit(3)\n\t}\n}\n"

// multiConfig is the apps form: alpha runs dev → staging (from dev) → prod
// (verified on staging), beta dev → prod. Short polls, few replicas.
func multiConfig(apps []*multiApp) *config.Set {
	set := &config.Set{Multi: true, BuildConcurrency: 2}
	for _, a := range apps {
		c := demo.Config(hostOf(a.urls["dev"]), hostOf(a.urls["prod"]))
		c.App = a.name
		c.Repo.URL = a.ws.Bare
		c.Repo.Poll = 300 * time.Millisecond
		var envs []config.Environment
		for _, e := range c.Environments {
			e.Rollout.GracePeriod = 5 * time.Second
			switch e.Name {
			case "dev":
				envs = append(envs, e)
				if _, ok := a.urls["staging"]; ok {
					s := config.DefaultEnvironment("staging")
					s.From = "dev"
					s.Listen = hostOf(a.urls["staging"])
					s.Rollout.GracePeriod = 5 * time.Second
					envs = append(envs, s)
				}
			case "prod":
				e.Replicas = 2
				e.RequireVerifiedOn = a.envs[len(a.envs)-2]
				e.Rollout.ReadyTimeout = 20 * time.Second
				e.Env = map[string]string{"E2E_PROD": "1"}
				envs = append(envs, e)
			}
		}
		c.Environments = envs
		set.Apps = append(set.Apps, c)
	}
	return set
}

func hostOf(url string) string { return strings.TrimPrefix(url, "http://") }

// multi drives one slipway serve of several apps.
type multi struct {
	*env
	apps    map[string]*multiApp
	dataDir string
}

// statusAll is `slipway status -o json` without --app: every app.
func (m *multi) statusAll() map[string]pipeline.Status {
	m.t.Helper()
	out, errOut, code := m.slipway("status", "-o", "json")
	if code != 0 {
		m.t.Fatalf("status: exit %d: %s", code, errOut)
	}
	var all api.AppsStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		m.t.Fatalf("status -o json: %v\n%s", err, out)
	}
	sts := map[string]pipeline.Status{}
	for _, st := range all.Apps {
		sts[st.App] = st
	}
	return sts
}

// runs reports whether env of app runs commit, verified, with no rollout.
func (m *multi) runs(app, env, commit string) bool {
	e := envOf(m.appStatus(app), env)
	return e.Commit != nil && *e.Commit == commit && e.Healthy && e.Rollout == nil
}

func (m *multi) waitRuns(app, env, commit string) {
	m.t.Helper()
	m.waitFor(fmt.Sprintf("%s %s on %s", app, commit[:7], env), func() bool { return m.runs(app, env, commit) })
}

// digest is the digest of app's image tag.
func (m *multi) digest(app, tag string) string {
	d, err := registry.NewClient().Digest(context.Background(), m.regAddr+"/"+app, tag)
	if err != nil {
		m.t.Errorf("registry %s:%s: %v", app, tag, err)
		return ""
	}
	return d.String()
}

// checkEnv checks that status, the runtime, the app's /version and the
// registry's env-NAME tag agree that env of app runs commit.
func (m *multi) checkEnv(app, env, commit string) {
	m.t.Helper()
	a := m.apps[app]
	e := envOf(m.appStatus(app), env)
	if e.Commit == nil || *e.Commit != commit || !e.Healthy {
		m.t.Errorf("status: %s %s runs %s healthy=%v, want %s", app, env, deref(e.Commit), e.Healthy, commit[:7])
	}
	ready := 0
	for _, in := range e.Instances {
		if in.Ready && in.Commit == commit {
			ready++
		}
	}
	if ready != e.Replicas.Desired || ready == 0 {
		m.t.Errorf("status: %d of %s %s's instances run %s and are ready, want %d: %+v", ready, app, env, commit[:7], e.Replicas.Desired, e.Instances)
	}
	if got := version(a.urls[env]); got != commit {
		m.t.Errorf("%s %s's /version = %s, want %s", app, env, got, commit)
	}
	want := m.digest(app, "sha-"+commit)
	if got := m.digest(app, config.EnvTag(env)); got != want {
		m.t.Errorf("registry: %s:%s on %s, want %s (sha-%s)", app, config.EnvTag(env), got, want, commit[:7])
	}
	if e.Digest == nil || *e.Digest != want {
		m.t.Errorf("status: %s %s's digest %s, want %s", app, env, deref(e.Digest), want)
	}
}

// checkRelease checks that status, the registry (live, RC…) and git
// (release branch, annotated tag) agree that app's prod runs release rc of
// commit.
func (m *multi) checkRelease(app, commit, rc string) {
	m.t.Helper()
	a := m.apps[app]
	m.checkEnv(app, "prod", commit)
	p := envOf(m.appStatus(app), "prod")
	if p.Release == nil || *p.Release != rc {
		m.t.Errorf("status: %s prod's release %s, want %s", app, deref(p.Release), rc)
	}
	want := m.digest(app, "sha-"+commit)
	for _, tag := range []string{"live", rc} {
		if got := m.digest(app, tag); got != want {
			m.t.Errorf("registry: %s:%s on %s, want %s", app, tag, got, want)
		}
	}
	if got := git(m.t, a.ws.Bare, "rev-parse", "release"); got != commit {
		m.t.Errorf("git: %s's release at %s, want %s", app, got, commit)
	}
	if got := git(m.t, a.ws.Bare, "rev-parse", rc+"^{commit}"); got != commit {
		m.t.Errorf("git: %s's tag %s on %s, want %s", app, rc, got, commit)
	}
}

// release runs `slipway release --app app [commit]` and returns its output,
// exit code and the release it made.
func (m *multi) release(app string, args ...string) (string, int, string) {
	m.t.Helper()
	out, errOut, code := m.slipway(append([]string{"release", "--app", app}, args...)...)
	p := envOf(m.appStatus(app), "prod")
	return out + errOut, code, deref(p.Release)
}

// ledgerRows are the deployments of every app, read from the ledger file.
func (m *multi) ledgerRows() map[string][]ledger.Deployment {
	m.t.Helper()
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(m.dataDir, ledger.FileName))
	if err != nil {
		m.t.Fatal(err)
	}
	defer store.Close()
	rows := map[string][]ledger.Deployment{}
	for name, a := range m.apps {
		for _, env := range a.envs {
			ds, err := store.Deployments().ForApp(name).Latest(ctx, env, 1000)
			if err != nil {
				m.t.Fatal(err)
			}
			rows[name] = append(rows[name], ds...)
		}
	}
	return rows
}

// checkNothingTwice checks that no commit went to an environment twice:
// one deployment per app, environment, kind and commit, but for one that a
// restart interrupted (marked failed, "checked again after restart") and
// the one that checked it again.
func (m *multi) checkNothingTwice() {
	m.t.Helper()
	type key struct{ app, env, kind, commit string }
	rows := map[key][]ledger.Deployment{}
	total := 0
	for app, ds := range m.ledgerRows() {
		for _, d := range ds {
			total++
			if !d.State.Final() {
				m.t.Errorf("ledger: %s %s deployment %d (%s %s) still %s after convergence", app, d.Env, d.ID, d.Kind, d.Commit[:7], d.State)
			}
			k := key{app, d.Env, string(d.Kind), d.Commit}
			rows[k] = append(rows[k], d)
		}
	}
	var lines []string
	for k, ds := range rows {
		var states []string
		counted := 0
		for _, d := range ds {
			s := string(d.State)
			if d.Note != "" {
				s += " (" + d.Note + ")"
			}
			states = append(states, s)
			if d.Note != "checked again after restart" {
				counted++
			}
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s: %s", k.app, k.env, k.kind, k.commit[:7], strings.Join(states, ", ")))
		if counted != 1 {
			m.t.Errorf("ledger: %s %s: %d deployments (%s) of %s %s, want one", k.app, k.env, counted, strings.Join(states, ", "), k.kind, k.commit[:7])
		}
	}
	sort.Strings(lines)
	m.t.Logf("ledger: %d deployments, per app, environment, kind and commit:\n%s", total, strings.Join(lines, "\n"))
}

// readyReplicas are the names of env's replicas that run commit and are
// ready.
func (m *multi) readyReplicas(app, env, commit string) []string {
	var names []string
	for _, in := range envOf(m.appStatus(app), env).Instances {
		if in.Ready && in.Commit == commit {
			names = append(names, in.Name)
		}
	}
	sort.Strings(names)
	return names
}

func TestMultiAppEndToEnd(t *testing.T) {
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	began := time.Now()
	short, err := os.MkdirTemp("", "sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	m := &multi{env: &env{t: t}, apps: map[string]*multiApp{}, dataDir: filepath.Join(short, "data")}
	m.apiURL = "http://" + testenv.FreeAddr(t)
	m.regAddr = testenv.FreeAddr(t)
	alpha := &multiApp{name: "alpha", envs: []string{"dev", "staging", "prod"}}
	beta := &multiApp{name: "beta", envs: []string{"dev", "prod"}}
	order := []*multiApp{alpha, beta}
	for _, a := range order {
		a.urls = map[string]string{}
		for _, e := range a.envs {
			a.urls[e] = "http://" + testenv.FreeAddr(t)
		}
		// The same sample service in two repositories.
		a.ws, err = demo.Prepare(context.Background(), demo.Options{Dir: filepath.Join(short, a.name),
			DevAddr: hostOf(a.urls["dev"]), ProdAddr: hostOf(a.urls["prod"])})
		if err != nil {
			t.Fatal(err)
		}
		m.apps[a.name] = a
	}
	var cfg bytes.Buffer
	if err := config.WriteSet(&cfg, multiConfig(order)); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(short, "slipway.yaml")
	writeFile(t, cfgPath, cfg.String())
	if out, errOut, code := runCLI("validate", "--config", cfgPath); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s\n%s", code, out, errOut, cfg.String())
	}
	m.bin = buildSlipway(t, short)
	m.logPath = filepath.Join(short, "serve.log")
	m.args = []string{"serve", "--config", cfgPath, "--data-dir", m.dataDir, "--api-addr", hostOf(m.apiURL), "--registry-addr", m.regAddr}
	t.Cleanup(func() {
		if m.stop != nil {
			m.stop()
		}
		// serve leaves environments running on purpose; the test stops them.
		for _, a := range order {
			stopEnvironments(t, m.dataDir, a.name, a.envs...)
		}
	})
	m.startServe()
	tok, err := os.ReadFile(filepath.Join(m.dataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TOKEN", strings.TrimSpace(string(tok)))

	// The first commit of each app goes to every environment of it: alpha's
	// staging takes it from dev, and the release branch (at the same commit)
	// takes it to prod.
	c0 := map[string]string{}
	rc0 := map[string]string{}
	for _, a := range order {
		c0[a.name] = git(t, a.ws.Bare, "rev-parse", "master")
	}
	for _, a := range order {
		m.waitRuns(a.name, "prod", c0[a.name])
		rc0[a.name] = deref(envOf(m.appStatus(a.name), "prod").Release)
	}
	t.Logf("measured: serve started → both apps on every environment: %s", time.Since(began).Round(time.Millisecond))
	for _, a := range order {
		for _, e := range a.envs {
			m.checkEnv(a.name, e, c0[a.name])
		}
		m.checkRelease(a.name, c0[a.name], rc0[a.name])
	}

	// Load on every environment of both apps from here to the end, across
	// pushes, releases, a rolled-back release and a SIGKILL of serve.
	var loads []*load
	for _, a := range order {
		for _, e := range a.envs {
			loads = append(loads, startLoad(a.urls[e], 2))
		}
	}
	defer func() {
		for _, l := range loads {
			l.finish(t, "the whole test")
		}
	}()

	// run runs a step as a subtest; the steps build on each other, so the
	// first that fails ends the test.
	run := func(name string, f func(t *testing.T)) {
		ok := t.Run(name, func(st *testing.T) {
			m.t = st
			defer func() { m.t = t }()
			f(st)
		})
		if !ok {
			t.FailNow()
		}
	}

	var c1 = map[string]string{}
	run("pushes to both apps", func(t *testing.T) {
		pushed := time.Now()
		for _, a := range order {
			c1[a.name] = a.push(t, "Say hi in "+a.name, func(dir string) {
				writeFile(t, filepath.Join(dir, "zz_"+a.name+".go"), "package main\n\nconst appName = \""+a.name+"\"\n")
			})
		}
		for _, a := range order {
			m.waitRuns(a.name, "dev", c1[a.name])
			t.Logf("measured: push → %s dev verified: %s", a.name, time.Since(pushed).Round(time.Millisecond))
		}
		m.waitRuns("alpha", "staging", c1["alpha"])
		t.Logf("measured: push → alpha staging verified: %s", time.Since(pushed).Round(time.Millisecond))
		for _, a := range order {
			m.checkEnv(a.name, "dev", c1[a.name])
			m.checkRelease(a.name, c0[a.name], rc0[a.name]) // prod did not move
		}
		m.checkEnv("alpha", "staging", c1["alpha"])
		if dev, staging := m.digest("alpha", "env-dev"), m.digest("alpha", "env-staging"); dev != staging || dev == "" {
			t.Errorf("registry: alpha's env-staging on %s, env-dev on %s: want the same digest", staging, dev)
		}
		st := m.appStatus("alpha")
		if s := envOf(st, "staging"); s.From != "dev" || s.Mode != "automatic" || s.Tag != "env-staging" {
			t.Errorf("status: alpha staging from=%q mode=%q tag=%q, want dev, automatic, env-staging", s.From, s.Mode, s.Tag)
		}
		if d, s := envOf(st, "dev"), envOf(st, "staging"); deref(d.Digest) != deref(s.Digest) {
			t.Errorf("status: alpha staging runs %s, dev %s: want the same digest", deref(s.Digest), deref(d.Digest))
		}
	})

	// beta's next commit makes its replicas exit on prod: it is pushed now,
	// so that beta builds and deploys it while alpha releases.
	var c2beta string
	var rc1alpha string
	run("release of one app while the other deploys", func(t *testing.T) {
		c2beta = beta.push(t, "Exit on prod", func(dir string) {
			writeFile(t, filepath.Join(dir, "zz_prod_only.go"), prodOnlyFailure)
		})
		// Built, and rolling out on beta's dev.
		m.waitFor("beta to deploy", func() bool {
			r := envOf(m.appStatus("beta"), "dev").Rollout
			return r != nil && r.Commit == c2beta && r.Step != "build"
		})
		started := time.Now()
		out, code, rc := m.release("alpha")
		t.Logf("measured: slipway release --app alpha → 2 prod replicas serving %s: %s", c1["alpha"][:7], time.Since(started).Round(time.Millisecond))
		if code != 0 || !strings.Contains(out, " is live on prod") {
			t.Fatalf("release alpha: exit %d\n%s", code, out)
		}
		rc1alpha = rc
		if r := envOf(m.appStatus("beta"), "dev").Rollout; r != nil {
			t.Logf("alpha's release went live while beta's dev deployment of %s was at step %s", c2beta[:7], r.Step)
		} else {
			t.Logf("beta's dev deployment of %s ended before alpha's release did", c2beta[:7])
		}
		m.checkRelease("alpha", c1["alpha"], rc1alpha)
		m.waitRuns("beta", "dev", c2beta)
		m.checkEnv("beta", "dev", c2beta)
		m.checkRelease("beta", c0["beta"], rc0["beta"])
	})

	run("broken release rolled back while the other app serves", func(t *testing.T) {
		started := time.Now()
		out, code, rc := m.release("beta", c2beta)
		t.Logf("measured: slipway release --app beta of a commit that never gets ready on prod → rolled back: %s", time.Since(started).Round(time.Millisecond))
		if code != 1 || !strings.Contains(out, "rolled-back") || !strings.Contains(out, "rolled back to "+rc0["beta"]) {
			t.Errorf("failing release: exit %d, %q", code, out)
		}
		if rc != rc0["beta"] {
			t.Errorf("beta prod's release after the rollback: %s, want %s", rc, rc0["beta"])
		}
		m.checkRelease("beta", c0["beta"], rc0["beta"])
		m.checkEnv("beta", "dev", c2beta)
		m.checkEnv("alpha", "dev", c1["alpha"])
		m.checkEnv("alpha", "staging", c1["alpha"])
		m.checkRelease("alpha", c1["alpha"], rc1alpha)
	})

	// serve killed (SIGKILL) while beta's prod rolls out a release and
	// alpha's dev a new commit; started again, it finishes both.
	var c2alpha, rc1beta string
	run("SIGKILL of serve during a release of one app and a deploy of the other", func(t *testing.T) {
		c2alpha = alpha.push(t, "Say hello again", func(dir string) {
			writeFile(t, filepath.Join(dir, "zz_alpha.go"), "package main\n\nconst appName = \"alpha again\"\n")
		})
		// Rolled out on alpha's dev, its replicas ready, under test.
		var alphaDev *pipeline.Rollout
		m.waitFor("alpha to deploy", func() bool {
			alphaDev = envOf(m.appStatus("alpha"), "dev").Rollout
			return alphaDev != nil && alphaDev.Commit == c2alpha && (alphaDev.Step == "health" || alphaDev.Step == "smoke")
		})
		before := m.readyReplicas("alpha", "dev", c2alpha)
		out, errOut, code := m.slipway("release", "--app", "beta", "--no-wait", "-o", "json", c1["beta"])
		if code != 0 {
			t.Fatalf("release --no-wait: exit %d\n%s%s", code, out, errOut)
		}
		var rel struct {
			ID      int64  `json:"id"`
			Release string `json:"release"`
		}
		if err := json.Unmarshal([]byte(out), &rel); err != nil {
			t.Fatal(err)
		}
		rc1beta = rel.Release
		// Two replicas roll out in a second or so: look often, kill at once.
		c := api.NewClient(m.apiURL, "")
		end := time.Now().Add(time.Minute)
		for {
			d, err := c.Deployment(context.Background(), "beta", rel.ID)
			if err == nil && d.Step == "deploy" {
				break
			}
			if err == nil && d.State.Final() || time.Now().After(end) {
				t.Fatalf("beta's release ended or stalled before serve could be killed at its step deploy: %s at %s (%v)", d.State, d.Step, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		m.kill()
		t.Logf("killed with beta's release at step deploy and alpha's dev deployment %d of %s at step %s (shortly before)", alphaDev.ID, c2alpha[:7], alphaDev.Step)
		restarted := time.Now()
		m.startServe()
		d, err := c.Wait(context.Background(), "beta", rel.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("beta's release across the restart: %s (%s) %s", d.State, d.Note, d.Reason)
		if d.State != "succeeded" || d.Note != "finished after restart" {
			t.Errorf("release across a restart: %s (%s): %s", d.State, d.Note, d.Reason)
		}
		m.waitRuns("beta", "prod", c1["beta"])
		m.waitRuns("alpha", "staging", c2alpha)
		t.Logf("measured: restart → beta prod and alpha dev and staging converged: %s", time.Since(restarted).Round(time.Millisecond))
		m.checkRelease("beta", c1["beta"], rc1beta)
		m.checkEnv("beta", "dev", c2beta)
		m.checkEnv("alpha", "dev", c2alpha)
		m.checkEnv("alpha", "staging", c2alpha)
		m.checkRelease("alpha", c1["alpha"], rc1alpha)
		m.checkNothingTwice()
		if d, err := c.Deployment(context.Background(), "alpha", alphaDev.ID); err != nil || d.Note != "checked again after restart" {
			t.Errorf("alpha's dev deployment %d of %s: %s (%s) %v, want it interrupted by the kill and checked again", alphaDev.ID, c2alpha[:7], d.State, d.Note, err)
		}
		// What was ready at the kill still serves: checked again, not
		// rolled out again.
		after := m.readyReplicas("alpha", "dev", c2alpha)
		if len(before) == 0 {
			t.Errorf("alpha dev had no ready replica of %s at the kill: nothing to compare", c2alpha[:7])
		}
		t.Logf("alpha dev's ready replicas of %s: %v at the kill, %v after", c2alpha[:7], before, after)
		for _, r := range before {
			if !slices.Contains(after, r) {
				t.Errorf("alpha dev's replica %s of %s, ready at the kill, was replaced after the restart: now %v", r, c2alpha[:7], after)
			}
		}
	})

	run("status of every app", func(t *testing.T) {
		all := m.statusAll()
		want := map[string]map[string]string{
			"alpha": {"dev": c2alpha, "staging": c2alpha, "prod": c1["alpha"]},
			"beta":  {"dev": c2beta, "prod": c1["beta"]},
		}
		if len(all) != len(want) {
			t.Errorf("status: apps %v, want alpha and beta", all)
		}
		for app, envs := range want {
			st := all[app]
			if len(st.Environments) != len(envs) {
				t.Errorf("status: %s has %d environments, want %d", app, len(st.Environments), len(envs))
			}
			for env, commit := range envs {
				if e := envOf(st, env); deref(e.Commit) != commit {
					t.Errorf("status: %s %s runs %s, want %s", app, env, deref(e.Commit), commit[:7])
				}
			}
		}
		out, errOut, code := m.slipway("status")
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		t.Logf("slipway status:\n%s", out)
		for app, envs := range want {
			for env, commit := range envs {
				if !hasRow(out, app, env, commit[:7]) {
					t.Errorf("status: no row for %s %s running %s", app, env, commit[:7])
				}
			}
		}
		out, errOut, code = m.slipway("status", "--app", "beta")
		if code != 0 {
			t.Fatalf("status --app beta: exit %d: %s", code, errOut)
		}
		if strings.Contains(out, "staging") || strings.Contains(out, c2alpha[:7]) || !strings.Contains(out, c2beta[:7]) {
			t.Errorf("status --app beta shows more or less than beta:\n%s", out)
		}
		if st := m.appStatus("beta"); st.App != "beta" || len(st.Environments) != 2 {
			t.Errorf("status --app beta -o json: app %q with %d environments, want beta with 2", st.App, len(st.Environments))
		}
	})
	t.Logf("measured: whole test %s", time.Since(began).Round(time.Millisecond))
	if log, err := os.ReadFile(m.logPath); err == nil {
		var warnings []string
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				warnings = append(warnings, line)
			}
		}
		t.Logf("serve's warnings and errors:\n%s", strings.Join(warnings, "\n"))
	}
}
