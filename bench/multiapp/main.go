// Command multiapp measures one `slipway serve` running many copies of the
// sample service on the local runtime, each with dev → staging → prod:
//
//   - the controller's CPU and RSS while idle, everything deployed;
//   - how long a push takes to be noticed (watched refs, and the poll);
//   - how long a signed GitHub push webhook takes to start a build;
//   - GET /api/v1/status of every app with 10,000 releases and 10,000 dev
//     deploys per app in the ledger;
//   - builds of several apps at once (build.concurrency), and one app's
//     release and rollback while other apps' slow builds hold every slot.
//
// It builds slipway, prepares N repositories of the sample service (as
// `slipway demo` does), starts serve and stops it and every environment at
// the end. See docs/benchmarks.md.
//
//	go run ./bench/multiapp -apps 20 -idle 60s
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

const (
	secret = "bench-webhook-secret"
	// slowMark is the file whose presence makes the default test command
	// sleep.
	slowMark = ".bench-slow"
)

type bench struct {
	dir, bin, data, cfg string
	apps                []string
	bares, clones       []string
	apiURL              string
	client              *api.Client
	serve               *exec.Cmd
	args                []string
	pollSlow            string // the app whose repo.poll is an hour (webhooks)
}

var only = flag.String("only", "", "comma-separated measurements to run (idle, notice, webhook, concurrency, status, idle after status); default all")

func main() {
	n := flag.Int("apps", 20, "apps (each dev → staging → prod, 1 replica each)")
	idle := flag.Duration("idle", 60*time.Second, "how long to measure the idle controller")
	rounds := flag.Int("rounds", 5, "rounds of the push, webhook, release and rollback measurements")
	conc := flag.Int("concurrency", 2, "build.concurrency")
	seed := flag.Int("seed", 10000, "releases (and as many dev deploys) seeded per app before measuring status")
	slow := flag.Duration("slow", 90*time.Second, "how long the test command of a commit marked slow sleeps")
	test := flag.String("test", "", "every app's test.command (default: none, but a sleep of -slow for a commit that has the file "+slowMark+")")
	deployWait := flag.Duration("deploy-timeout", 90*time.Minute, "how long to wait for every app's prod on its first commit")
	keep := flag.Bool("keep", false, "keep the workspace (the environments are stopped either way)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *test == "" {
		*test = fmt.Sprintf("if [ -f %s ]; then sleep %d; fi", slowMark, int(slow.Seconds()))
	}
	if err := run(ctx, *n, *idle, *rounds, *conc, *seed, *slow, *test, *deployWait, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "multiapp:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, n int, idle time.Duration, rounds, conc, seed int, slow time.Duration, test string, deployWait time.Duration, keep bool) error {
	if n < 9 {
		return fmt.Errorf("-apps %d: at least 9 (the measurements use different apps)", n)
	}
	dir, err := os.MkdirTemp("", "swm") // short: unix sockets live below it
	if err != nil {
		return err
	}
	b := &bench{dir: dir, bin: filepath.Join(dir, "slipway"), data: filepath.Join(dir, "data"), cfg: filepath.Join(dir, "slipway.yaml")}
	defer func() {
		b.stopServe()
		b.stopEnvironments()
		if !keep {
			os.RemoveAll(dir)
		} else {
			logf("workspace kept: %s", dir)
		}
	}()
	logf("workspace %s; load average %s", dir, loadavg())
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/slipway").CombinedOutput(); err != nil {
		return fmt.Errorf("build slipway: %v\n%s", err, out)
	}
	logf("test.command of every app: %s", test)
	if err := b.prepare(ctx, n, conc, test); err != nil {
		return err
	}
	started := time.Now()
	if err := b.startServe(ctx); err != nil {
		return err
	}
	if err := b.waitAll(ctx, "every app's prod on its first commit", deployWait, func(st pipeline.Status) bool {
		return envHealthyOn(st, "prod", "")
	}); err != nil {
		return err
	}
	logf("deployed: %d apps × 3 environments in %s", n, time.Since(started).Round(time.Second))

	// Each measurement reports its own failure; the others still run.
	var failed []string
	for _, m := range []struct {
		name string
		f    func() error
	}{
		{"idle", func() error { return b.measureIdle(ctx, idle, "idle, everything deployed") }},
		{"notice", func() error { return b.measureNotice(ctx, rounds) }},
		{"webhook", func() error { return b.measureWebhook(ctx, rounds) }},
		{"concurrency", func() error { return b.measureConcurrency(ctx, rounds, conc, slow) }},
		{"status", func() error { return b.measureStatus(ctx, seed, 30) }},
		{"idle after status", func() error { return b.measureIdle(ctx, idle/2, "idle after the status calls, seeded ledger") }},
	} {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), m.name) {
			continue
		}
		if err := m.f(); err != nil {
			if ctx.Err() != nil {
				return err
			}
			logf("FAILED %s: %v", m.name, err)
			failed = append(failed, m.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// prepare makes n repositories of the sample service and the configuration.
func (b *bench) prepare(ctx context.Context, n, conc int, test string) error {
	var y strings.Builder
	fmt.Fprintf(&y, "build:\n  concurrency: %d\napps:\n", conc)
	for i := range n {
		name := fmt.Sprintf("bday%02d", i+1)
		ws, err := demo.Prepare(ctx, demo.Options{Dir: filepath.Join(b.dir, "src", name)})
		if err != nil {
			return err
		}
		poll := "2s"
		if i == 1 {
			poll = "1h" // the webhook's app: only the webhook starts its builds
			b.pollSlow = name
		}
		b.apps = append(b.apps, name)
		b.bares = append(b.bares, ws.Bare)
		b.clones = append(b.clones, ws.Clone)
		fmt.Fprintf(&y, "  - app: %s\n    repo: {url: %s, poll: %s, webhookSecretEnv: BENCH_WEBHOOK_SECRET}\n    test: {command: %q}\n    environments:\n", name, ws.Bare, poll, test)
		for _, env := range []string{"dev", "staging", "prod"} {
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			fmt.Fprintf(&y, "      - name: %s\n        listen: %s\n        replicas: 1\n", env, addr)
			if env == "staging" {
				y.WriteString("        from: dev\n")
			}
		}
	}
	return os.WriteFile(b.cfg, []byte(y.String()), 0o644)
}

func (b *bench) startServe(ctx context.Context) error {
	apiAddr, err := freeAddr()
	if err != nil {
		return err
	}
	regAddr, err := freeAddr()
	if err != nil {
		return err
	}
	b.apiURL = "http://" + apiAddr
	b.args = []string{"serve", "--config", b.cfg, "--data-dir", b.data, "--api-addr", apiAddr, "--registry-addr", regAddr}
	logFile, err := os.OpenFile(filepath.Join(b.dir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	b.serve = exec.Command(b.bin, b.args...)
	b.serve.Env = append(os.Environ(), "BENCH_WEBHOOK_SECRET="+secret)
	b.serve.Stdout, b.serve.Stderr = logFile, logFile
	if err := b.serve.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		tok, err := os.ReadFile(filepath.Join(b.data, api.TokenFile))
		if err == nil {
			b.client = api.NewClient(b.apiURL, strings.TrimSpace(string(tok)))
			if _, err := b.client.Apps(ctx); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("serve did not answer within a minute; see %s", filepath.Join(b.dir, "serve.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *bench) stopServe() {
	if b.serve == nil || b.serve.Process == nil {
		return
	}
	b.serve.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { b.serve.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.serve.Process.Kill()
		<-done
	}
	b.serve = nil
}

// stopEnvironments stops what serve leaves running.
func (b *bench) stopEnvironments() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, app := range b.apps {
		be, err := local.New(local.Options{Dir: filepath.Join(b.data, "run", app), App: app, LegacyDir: filepath.Join(b.data, "run")})
		if err != nil {
			logf("stop %s: %v", app, err)
			continue
		}
		for _, env := range []string{"dev", "staging", "prod"} {
			if err := be.Stop(ctx, env); err != nil {
				logf("stop %s %s: %v", app, env, err)
			}
		}
	}
}

func envOf(st pipeline.Status, name string) pipeline.EnvStatus {
	for _, e := range st.Environments {
		if e.Name == name {
			return e
		}
	}
	return pipeline.EnvStatus{}
}

// envHealthyOn: env runs commit ("": any), healthy, no rollout.
func envHealthyOn(st pipeline.Status, env, commit string) bool {
	e := envOf(st, env)
	return e.Commit != nil && (commit == "" || *e.Commit == commit) && e.Healthy && e.Rollout == nil
}

func (b *bench) waitAll(ctx context.Context, what string, limit time.Duration, ok func(pipeline.Status) bool) error {
	deadline := time.Now().Add(limit)
	last := time.Now()
	for {
		all, err := b.client.StatusAll(ctx)
		done := 0
		if err == nil {
			for _, st := range all {
				if ok(st) {
					done++
				}
			}
			if done == len(b.apps) {
				return nil
			}
		}
		if time.Since(last) > 30*time.Second {
			logf("waiting for %s: %d of %d (%v)", what, done, len(b.apps), err)
			last = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d after %s (%v); see %s", what, done, len(b.apps), limit, err, filepath.Join(b.dir, "serve.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (b *bench) waitApp(ctx context.Context, app, what string, limit time.Duration, ok func(pipeline.Status) bool) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := b.client.Status(ctx, app)
		if err == nil && ok(st) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not reached after %s (%v)", app, what, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// measureIdle reads serve's CPU time and RSS from /proc over d.
func (b *bench) measureIdle(ctx context.Context, d time.Duration, what string) error {
	pid := b.serve.Process.Pid
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second): // let the last rollouts' work settle
	}
	c0, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var maxRSS float64
	for time.Since(t0) < d {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		rss, _ := statusKB(pid, "VmRSS")
		maxRSS = max(maxRSS, rss)
	}
	c1, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	el := time.Since(t0)
	rss, _ := statusKB(pid, "VmRSS")
	hwm, _ := statusKB(pid, "VmHWM")
	threads, _ := statusKB(pid, "Threads")
	cpu := time.Duration(float64(c1-c0) / 100 * float64(time.Second)) // USER_HZ = 100 on Linux
	logf("RESULT idle (%s): controller CPU %.2f %% of one core (%s of CPU in %s); RSS %.1f MiB (max %.1f MiB over the period, high-water mark %.1f MiB); %d threads; load average %s",
		what, 100*cpu.Seconds()/el.Seconds(), cpu, el.Round(time.Second), rss/1024, maxRSS/1024, hwm/1024, int(threads), loadavg())
	return nil
}

// cpuTicks is utime + stime of pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k, nil
}

func statusKB(pid int, key string) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

func loadavg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

// commit makes a new commit in the app's clone (a change of one package
// every test and the binary use) and returns its hash; extra files are
// written beside it.
func (b *bench) commit(ctx context.Context, i int, msg string, extra map[string]string) (string, error) {
	clone := b.clones[i]
	stamp := fmt.Sprintf("package birthday\n\nvar benchStamp = %q\n", msg+strconv.FormatInt(time.Now().UnixNano(), 36))
	files := map[string]string{"internal/birthday/zz_bench.go": stamp}
	for k, v := range extra {
		files[k] = v
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(clone, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := git(ctx, clone, "add", "--all"); err != nil {
		return "", err
	}
	if _, err := git(ctx, clone, "commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	return git(ctx, clone, "rev-parse", "HEAD")
}

func (b *bench) push(ctx context.Context, i int) error {
	_, err := git(ctx, b.clones[i], "push", "-q", "origin", "master")
	return err
}

// sneak moves master of app i's bare repository to the clone's HEAD
// without changing what the controller's watch of the refs sees (the ref
// file's size and modification time): only a poll or a webhook notices.
func (b *bench) sneak(ctx context.Context, i int, commit string) error {
	bare := b.bares[i]
	if _, err := git(ctx, bare, "fetch", "-q", "--no-write-fetch-head", b.clones[i], "master"); err != nil {
		return err
	}
	loose := filepath.Join(bare, "refs", "heads", "master")
	path, content := loose, commit+"\n"
	fi, err := os.Stat(loose)
	if err != nil {
		path = filepath.Join(bare, "packed-refs")
		if fi, err = os.Stat(path); err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var out []string
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasSuffix(line, " refs/heads/master") {
				line = commit + " refs/heads/master"
			}
			out = append(out, line)
		}
		content = strings.Join(out, "\n")
	}
	tmp := path + ".bench"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// buildOf waits for app's build of commit to exist and returns it.
func (b *bench) buildOf(ctx context.Context, app, commit string, limit time.Duration) (ledger.Build, error) {
	deadline := time.Now().Add(limit)
	for {
		builds, err := b.client.Builds(ctx, app, 5)
		if err == nil {
			for _, bu := range builds {
				if bu.Commit == commit {
					return bu, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return ledger.Build{}, fmt.Errorf("%s: no build of %s after %s (%v)", app, commit[:7], limit, err)
		}
		select {
		case <-ctx.Done():
			return ledger.Build{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// finished waits for app's build of commit to end.
func (b *bench) finished(ctx context.Context, app, commit string, limit time.Duration) (ledger.Build, error) {
	deadline := time.Now().Add(limit)
	for {
		bu, err := b.buildOf(ctx, app, commit, limit)
		if err != nil {
			return bu, err
		}
		if !bu.Finished.IsZero() {
			return bu, nil
		}
		if time.Now().After(deadline) {
			return bu, fmt.Errorf("%s: build of %s unfinished after %s", app, commit[:7], limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// measureNotice: a push (watched refs), then a move of master the watch
// cannot see (the 2 s poll alone), each until the build's row exists.
func (b *bench) measureNotice(ctx context.Context, rounds int) error {
	app := b.apps[0]
	var watched, polled []time.Duration
	for r := range rounds {
		c, err := b.commit(ctx, 0, fmt.Sprintf("notice %d", r), nil)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := b.push(ctx, 0); err != nil {
			return err
		}
		bu, err := b.buildOf(ctx, app, c, time.Minute)
		if err != nil {
			return err
		}
		watched = append(watched, bu.Created.Sub(t0))
		if _, err := b.finished(ctx, app, c, 10*time.Minute); err != nil {
			return err
		}
		c, err = b.commit(ctx, 0, fmt.Sprintf("poll %d", r), nil)
		if err != nil {
			return err
		}
		t0 = time.Now()
		if err := b.sneak(ctx, 0, c); err != nil {
			return err
		}
		if bu, err = b.buildOf(ctx, app, c, time.Minute); err != nil {
			return err
		}
		polled = append(polled, bu.Created.Sub(t0))
		if _, err := b.finished(ctx, app, c, 10*time.Minute); err != nil {
			return err
		}
	}
	logf("RESULT push → build row (git push, refs watched every 100 ms): %s", durations(watched))
	logf("RESULT ref moved unseen by the watch → build row (repo.poll 2s): %s", durations(polled))
	return nil
}

// measureWebhook: master moves unseen by the watch, on an app polling
// hourly; a signed GitHub push webhook until the build's row exists.
func (b *bench) measureWebhook(ctx context.Context, rounds int) error {
	const i = 1
	app := b.apps[i]
	var rowAfter, answered []time.Duration
	for r := range rounds {
		c, err := b.commit(ctx, i, fmt.Sprintf("webhook %d", r), nil)
		if err != nil {
			return err
		}
		if err := b.sneak(ctx, i, c); err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]any{
			"ref": "refs/heads/master", "after": c,
			"repository": map[string]string{"clone_url": b.bares[i], "full_name": "bench/" + app},
		})
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.apiURL+"/api/v1/apps/"+app+"/webhooks/github", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered = append(answered, time.Since(t0))
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("webhook: %s: %s", resp.Status, answer)
		}
		bu, err := b.buildOf(ctx, app, c, time.Minute)
		if err != nil {
			return err
		}
		rowAfter = append(rowAfter, bu.Created.Sub(t0))
		if _, err := b.finished(ctx, app, c, 10*time.Minute); err != nil {
			return err
		}
	}
	logf("RESULT webhook answered (202): %s", durations(answered))
	logf("RESULT webhook → build row (repo.poll 1h, refs unchanged for the watch): %s", durations(rowAfter))
	return nil
}

type timed struct {
	took time.Duration // request until the API says the deployment ended
	row  time.Duration // request until the row's finished_at
}

// releaseRollback releases the newest commit verified on staging of app
// and rolls it back, rounds times.
func (b *bench) releaseRollback(ctx context.Context, app string, rounds int) (rel, rb []timed, err error) {
	one := func(f func() (ledger.Deployment, error)) (timed, error) {
		t0 := time.Now()
		d, err := f()
		if err != nil {
			return timed{}, err
		}
		d, err = b.client.Wait(ctx, app, d.ID, nil)
		if err != nil {
			return timed{}, err
		}
		took := time.Since(t0)
		if d.State != ledger.StateSucceeded {
			return timed{}, fmt.Errorf("%s %s: %s (%s)", app, d.Kind, d.State, d.Reason)
		}
		return timed{took: took, row: d.FinishedAt.Sub(t0)}, nil
	}
	for range rounds {
		t, err := one(func() (ledger.Deployment, error) { return b.client.Release(ctx, app, api.ReleaseRequest{}) })
		if err != nil {
			return nil, nil, fmt.Errorf("release: %w", err)
		}
		rel = append(rel, t)
		t, err = one(func() (ledger.Deployment, error) { return b.client.Rollback(ctx, app, api.RollbackRequest{}) })
		if err != nil {
			return nil, nil, fmt.Errorf("rollback: %w", err)
		}
		rb = append(rb, t)
	}
	return rel, rb, nil
}

// measureConcurrency: three apps pushed at once build conc at a time;
// then app B's release and rollback, alone and while slow builds of other
// apps hold every build slot.
func (b *bench) measureConcurrency(ctx context.Context, rounds, conc int, slow time.Duration) error {
	idx := []int{2, 3, 4}
	commits := map[int]string{}
	for _, i := range idx {
		c, err := b.commit(ctx, i, "together", nil)
		if err != nil {
			return err
		}
		commits[i] = c
	}
	t0 := time.Now()
	for _, i := range idx {
		if err := b.push(ctx, i); err != nil {
			return err
		}
	}
	var builds []ledger.Build
	for _, i := range idx {
		bu, err := b.finished(ctx, b.apps[i], commits[i], 20*time.Minute)
		if err != nil {
			return err
		}
		builds = append(builds, bu)
	}
	slices.SortFunc(builds, func(x, y ledger.Build) int { return x.Created.Compare(y.Created) })
	var lines []string
	for _, bu := range builds {
		lines = append(lines, fmt.Sprintf("%s %s–%s", bu.App, bu.Created.Sub(t0).Round(10*time.Millisecond), bu.Finished.Sub(t0).Round(10*time.Millisecond)))
	}
	logf("RESULT 3 apps pushed at once, build.concurrency %d: builds (start–end after the pushes) %s; most at once: %d", conc, strings.Join(lines, ", "), overlap(builds))

	// B: the first of those apps, its commit on to staging.
	bi := idx[0]
	app := b.apps[bi]
	if err := b.waitApp(ctx, app, "staging on the new commit", 5*time.Minute, func(st pipeline.Status) bool {
		return envHealthyOn(st, "staging", commits[bi])
	}); err != nil {
		return err
	}
	rel0, rb0, err := b.releaseRollback(ctx, app, rounds)
	if err != nil {
		return err
	}
	logf("RESULT %s release, no build running: %s", app, timings(rel0))
	logf("RESULT %s rollback, no build running: %s", app, timings(rb0))

	// Slow builds of other apps fill every slot; one more app waits.
	var slowApps []string
	slowCommits := map[string]string{}
	for k := range conc {
		i := 5 + k
		c, err := b.commit(ctx, i, "slow test", map[string]string{slowMark: "slow\n"})
		if err != nil {
			return err
		}
		if err := b.push(ctx, i); err != nil {
			return err
		}
		slowApps = append(slowApps, b.apps[i])
		slowCommits[b.apps[i]] = c
	}
	for _, a := range slowApps {
		if _, err := b.buildOf(ctx, a, slowCommits[a], 5*time.Minute); err != nil {
			return err
		}
	}
	waiting := 5 + conc
	cw, err := b.commit(ctx, waiting, "waits for a slot", nil)
	if err != nil {
		return err
	}
	tw := time.Now()
	if err := b.push(ctx, waiting); err != nil {
		return err
	}
	logf("slow builds running: %s; %s pushed", strings.Join(slowApps, ", "), b.apps[waiting])
	rel1, rb1, err := b.releaseRollback(ctx, app, rounds)
	if err != nil {
		return err
	}
	during := time.Now()
	logf("RESULT %s release, %d slow builds holding every slot: %s", app, conc, timings(rel1))
	logf("RESULT %s rollback, %d slow builds holding every slot: %s", app, conc, timings(rb1))
	for _, a := range slowApps {
		bu, err := b.buildOf(ctx, a, slowCommits[a], time.Minute)
		if err != nil {
			return err
		}
		if !bu.Finished.IsZero() && bu.Finished.Before(during) {
			logf("WARNING: %s's slow build ended before the measurements did; raise -slow", a)
		}
	}
	bw, err := b.finished(ctx, b.apps[waiting], cw, 20*time.Minute)
	if err != nil {
		return err
	}
	logf("RESULT %s's build, pushed while the slots were held, started %s after its push (slow tests: %s)", b.apps[waiting], bw.Created.Sub(tw).Round(10*time.Millisecond), slow)
	for _, a := range slowApps {
		if _, err := b.finished(ctx, a, slowCommits[a], 20*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// overlap is the most builds running at one time.
func overlap(builds []ledger.Build) int {
	most := 0
	for _, x := range builds {
		n := 0
		for _, y := range builds {
			if !y.Created.After(x.Created) && y.Finished.After(x.Created) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// measureStatus seeds the ledger with seed releases of prod and seed
// deploys of dev per app, older than every real row, and times
// GET /api/v1/status.
func (b *bench) measureStatus(ctx context.Context, seed, calls int) error {
	t0 := time.Now()
	if err := b.seed(ctx, seed); err != nil {
		return fmt.Errorf("seed the ledger: %w", err)
	}
	logf("seeded %d × %d rows in %s", len(b.apps), 2*seed, time.Since(t0).Round(time.Millisecond))
	all, err := b.client.StatusAll(ctx)
	if err != nil {
		return err
	}
	for _, st := range all {
		if p := envOf(st, "prod"); p.Release == nil || strings.HasPrefix(*p.Release, "RC2020") {
			return fmt.Errorf("%s: prod shows a seeded release %v", st.App, p.Release)
		}
	}
	var took []time.Duration
	for range calls {
		t := time.Now()
		all, err := b.client.StatusAll(ctx)
		if err != nil {
			return err
		}
		took = append(took, time.Since(t))
		if len(all) != len(b.apps) {
			return fmt.Errorf("status: %d apps, want %d", len(all), len(b.apps))
		}
	}
	logf("RESULT GET /api/v1/status, %d apps × 3 environments, %d releases + %d dev deploys per app: %s; load average %s", len(b.apps), seed, seed, durations(took), loadavg())
	return nil
}

// seed inserts rows with negative ids: older than every row the
// controller wrote, so that what runs stays what the newest rows say.
func (b *bench) seed(ctx context.Context, n int) error {
	store, err := ledger.Open(ctx, filepath.Join(b.data, ledger.FileName))
	if err != nil {
		return err
	}
	defer store.Close()
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO deployments (id, app, env, kind, trigger, commit_sha, image, digest,
		release_name, replicas, state, created_at, updated_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	id := int64(0)
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, app := range b.apps {
		for i := range n {
			ts := t0.Add(time.Duration(i) * time.Minute).Format("2006-01-02T15:04:05.000000000Z")
			c := fmt.Sprintf("%040x", i)
			digest := fmt.Sprintf("sha256:%064x", i)
			id--
			if _, err := stmt.ExecContext(ctx, id, app, "dev", "deploy", "push to master", c, "r/"+app+"@"+digest, digest, "", 1, "succeeded", ts, ts, ts); err != nil {
				return err
			}
			id--
			name := "RC" + t0.Add(time.Duration(i)*time.Minute).Format("20060102_1504")
			if _, err := stmt.ExecContext(ctx, id, app, "prod", "release", "release command", c, "r/"+app+"@"+digest, digest, name, 1, "succeeded", ts, ts, ts); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	var all []string
	for _, d := range ds {
		sum += d
		all = append(all, d.Round(time.Millisecond).String())
	}
	return fmt.Sprintf("median %s, mean %s, min %s, max %s (n=%d: %s)", s[len(s)/2].Round(time.Millisecond),
		(sum / time.Duration(len(s))).Round(time.Millisecond), s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond),
		len(s), strings.Join(all, " "))
}

func timings(ts []timed) string {
	var took, row []time.Duration
	for _, t := range ts {
		took = append(took, t.took)
		row = append(row, t.row)
	}
	return "until the API reports it ended (polled every 100 ms, as the CLI does): " + durations(took) + "; until the row's finish time: " + durations(row)
}

// nextPort walks ports below Linux's ephemeral range (32768 and up), which
// outgoing connections never take: a port the kernel picked for ":0" could
// be taken by one of serve's own connections before its environment
// listens on it.
var nextPort = 20000 + rand.IntN(8000)

// freeAddr returns a free 127.0.0.1 address below the ephemeral range.
func freeAddr() (string, error) {
	for ; nextPort < 32768; nextPort++ {
		addr := fmt.Sprintf("127.0.0.1:%d", nextPort)
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			nextPort++
			return addr, nil
		}
	}
	return "", errors.New("no free port between 20000 and 32767")
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C",
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.com", "GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
