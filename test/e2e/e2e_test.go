//go:build integration

// Package e2e runs slipway end to end on the demo workspace: real git
// pushes to app.git, the real builder, the embedded registry, the local
// runtime with the sample service, the controller and its CLI.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/cli"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

func TestMain(m *testing.M) {
	local.SupervisorMain()
	testscript.Main(m, map[string]func(){
		"slipway": func() { os.Exit(slipwayMain(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func newRoot() *cobra.Command { return cli.NewRoot() }

func slipwayMain(args []string, stdout, stderr *os.File) int {
	return cli.Main(context.Background(), args, stdout, stderr)
}

// deadline guards against a hang: the steps below take seconds to a minute
// each, so waiting longer means something is broken.
const deadline = 5 * time.Minute

type env struct {
	t       *testing.T
	ws      demo.Workspace
	devURL  string
	prodURL string
	apiURL  string
	regAddr string
	bin     string   // the slipway binary
	args    []string // serve's arguments
	cliArgs []string // added to every e.slipway call (launchDemo's --data-dir)
	logPath string   // when set, every serve's whole log is appended there

	stop, kill func()
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func gitErr(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// buildSlipway builds the slipway binary into dir.
func buildSlipway(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "slipway")
	cmd := exec.Command("go", "build", "-o", bin, "slipway.dev/slipway/cmd/slipway")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build slipway: %v\n%s", err, out)
	}
	return bin
}

// startServe runs `slipway serve` as a process of its own. e.stop stops it
// with SIGTERM, e.kill with SIGKILL.
func (e *env) startServe() {
	e.t.Helper()
	var out bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(e.bin, e.args...)
	var w io.Writer = &lockedWriter{mu: &mu, w: &out}
	closeLog := func() {}
	if e.logPath != "" {
		f, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			e.t.Fatal(err)
		}
		closeLog = func() { f.Close() }
		w = io.MultiWriter(w, f)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	end := func(sig os.Signal) {
		cmd.Process.Signal(sig)
		err := <-done
		closeLog()
		mu.Lock()
		e.t.Logf("serve (%v: %v), its log:\n%s", sig, err, lastLines(out.String(), 40))
		mu.Unlock()
		e.stop, e.kill = nil, nil
	}
	e.stop = func() { end(syscall.SIGTERM) }
	e.kill = func() { end(syscall.SIGKILL) }
	e.waitFor("the API", func() bool {
		select {
		case err := <-done:
			mu.Lock()
			defer mu.Unlock()
			e.t.Fatalf("serve stopped: %v\n%s", err, out.String())
		default:
		}
		_, err := api.NewClient(e.apiURL, "").Status(context.Background(), "")
		return err == nil
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			e.t.Fatalf("gave up waiting for %s after %s", what, deadline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// slipway runs the CLI in this process against the API.
func (e *env) slipway(args ...string) (string, string, int) {
	e.t.Helper()
	return runCLI(append(append(args, "--server", e.apiURL), e.cliArgs...)...)
}

// appStatus is app's status, as `slipway status --app APP -o json` prints it.
func (e *env) appStatus(app string) pipeline.Status {
	e.t.Helper()
	out, errOut, code := e.slipway("status", "--app", app, "-o", "json")
	if code != 0 {
		e.t.Fatalf("status --app %s: exit %d: %s", app, code, errOut)
	}
	var st pipeline.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("status --app %s -o json: %v\n%s", app, err, out)
	}
	if st.App != app {
		e.t.Fatalf("status --app %s: the status of app %q", app, st.App)
	}
	return st
}

// runCLI runs the CLI in this process.
func runCLI(args ...string) (string, string, int) {
	root := newRoot()
	root.SetArgs(args)
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&stderr, "slipway:", err)
	}
	return stdout.String(), stderr.String(), cli.ExitCode(err)
}

func (e *env) status() pipeline.Status {
	e.t.Helper()
	out, errOut, code := e.slipway("status", "-o", "json")
	if code != 0 {
		e.t.Fatalf("status: exit %d: %s", code, errOut)
	}
	var st pipeline.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("status -o json: %v\n%s", err, out)
	}
	return st
}

func envOf(st pipeline.Status, name string) pipeline.EnvStatus {
	for _, e := range st.Environments {
		if e.Name == name {
			return e
		}
	}
	return pipeline.EnvStatus{}
}

func version(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url + "/version")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		Commit string `json:"commit"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return ""
	}
	return v.Commit
}

// push commits a change in the clone and pushes it to master.
func (e *env) push(msg string, change func(dir string)) string {
	e.t.Helper()
	change(e.ws.Clone)
	git(e.t, e.ws.Clone, "add", "--all")
	git(e.t, e.ws.Clone, "commit", "-q", "-m", msg)
	git(e.t, e.ws.Clone, "push", "-q", "origin", "HEAD:master")
	return git(e.t, e.ws.Clone, "rev-parse", "HEAD")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkTruth checks that status, the registry's tags and git agree that
// prod runs commit as release rc.
func (e *env) checkTruth(commit, rc string) {
	e.t.Helper()
	ctx := context.Background()
	st := e.status()
	prod := envOf(st, "prod")
	if prod.Commit == nil || *prod.Commit != commit || prod.Release == nil || *prod.Release != rc || !prod.Healthy {
		e.t.Errorf("status: prod runs %v %v healthy=%v; want %s %s", deref(prod.Commit), deref(prod.Release), prod.Healthy, commit[:7], rc)
	}
	// The runtime's own view: how replicas are confined, and each one.
	if prod.Isolation == nil || (*prod.Isolation != "sandbox" && *prod.Isolation != "process") {
		e.t.Errorf("status: prod's isolation = %v, want sandbox or process", deref(prod.Isolation))
	}
	ready := 0
	for _, in := range prod.Instances {
		if in.Ready && in.Commit == commit {
			ready++
		}
	}
	if ready != prod.Replicas.Desired {
		e.t.Errorf("status: %d of prod's instances run %s and are ready, want %d: %+v", ready, commit[:7], prod.Replicas.Desired, prod.Instances)
	}
	if got := version(e.prodURL); got != commit {
		e.t.Errorf("prod's /version = %s, want %s", got, commit)
	}
	repo := e.regAddr + "/" + demo.AppName
	reg := registry.NewClient()
	digestOf := func(tag string) string {
		d, err := reg.Digest(ctx, repo, tag)
		if err != nil {
			e.t.Errorf("registry tag %s: %v", tag, err)
			return ""
		}
		return d.String()
	}
	want := digestOf("sha-" + commit)
	for _, tag := range []string{commit[:7], "live", rc} {
		if got := digestOf(tag); got != want {
			e.t.Errorf("registry: %s on %s, want %s (sha-%s)", tag, got, want, commit[:7])
		}
	}
	if prod.Digest == nil || *prod.Digest != want {
		e.t.Errorf("status digest %s, want %s", deref(prod.Digest), want)
	}
	if got := git(e.t, e.ws.Bare, "rev-parse", "release"); got != commit {
		e.t.Errorf("git: release at %s, want %s", got, commit)
	}
	if got := git(e.t, e.ws.Bare, "rev-parse", rc+"^{commit}"); got != commit {
		e.t.Errorf("git: tag %s on %s, want %s", rc, got, commit)
	}
	if got := git(e.t, e.ws.Bare, "cat-file", "-t", rc); got != "tag" {
		e.t.Errorf("git: %s is a %s, want an annotated tag", rc, got)
	}
}

// checkLatest checks that the registry's latest tag is on commit's image
// (the newest build) and that dev runs that image.
func (e *env) checkLatest(commit string) {
	e.t.Helper()
	ctx := context.Background()
	repo := e.regAddr + "/" + demo.AppName
	reg := registry.NewClient()
	want, err := reg.Digest(ctx, repo, "sha-"+commit)
	if err != nil {
		e.t.Fatalf("registry tag sha-%s: %v", commit, err)
	}
	if got, err := reg.Digest(ctx, repo, "latest"); err != nil || got != want {
		e.t.Errorf("registry: latest on %v (%v), want %s (sha-%s)", got, err, want, commit[:7])
	}
	dev := envOf(e.status(), "dev")
	if dev.Digest == nil || *dev.Digest != want.String() {
		e.t.Errorf("status: dev runs %s, want %s", deref(dev.Digest), want)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

// load sends requests to url until stop; every answer must be 2xx.
type load struct {
	url        string
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(url string, workers int) *load {
	l := &load{url: url, stop: make(chan struct{})}
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			name := "loader" + string(rune('a'+i))
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				var err error
				var resp *http.Response
				if i%2 == 0 {
					req, _ := http.NewRequest("PUT", url+"/hello/"+name, strings.NewReader(`{"dateOfBirth":"2000-01-02"}`))
					resp, err = c.Do(req)
				} else {
					resp, err = c.Get(url + "/version")
				}
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode >= 300 {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
				} else {
					l.ok.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) finish(t *testing.T, during string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load on %s during %s: %d requests succeeded, %d failed", l.url, during, l.ok.Load(), l.failed.Load())
	if l.failed.Load() > 0 || l.ok.Load() == 0 {
		t.Errorf("load on %s during %s: %d failed (first: %v), %d succeeded; want none failed", l.url, during, l.failed.Load(), l.firstErr.Load(), l.ok.Load())
	}
}

// startDemo prepares the demo workspace in a short temporary directory
// (the runtime's unix sockets live below it) with free addresses, lets
// edit change it (e.ws) before `slipway serve` starts (short is that directory),
// builds slipway, starts serve, and sets SLIPWAY_TOKEN. With logToFile,
// serve's whole log goes to short/serve.log too. At the test's end serve
// is stopped, and the environments it leaves running on purpose too.
func startDemo(t *testing.T, logToFile bool, edit func(e *env, short string)) (e *env, token string) {
	t.Helper()
	e, token = launchDemo(t, logToFile, edit)
	e.cliArgs = nil // the CLI reads the token from SLIPWAY_TOKEN
	t.Setenv("SLIPWAY_TOKEN", token)
	return e, token
}

// launchDemo is startDemo for tests that run in parallel, which may not
// set environment variables: e.slipway passes --data-dir instead, where
// the CLI finds the token.
func launchDemo(t *testing.T, logToFile bool, edit func(e *env, short string)) (e *env, token string) {
	t.Helper()
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	short, err := os.MkdirTemp("", "sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	e = &env{t: t}
	if logToFile {
		e.logPath = filepath.Join(short, "serve.log")
	}
	devAddr, prodAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	e.devURL, e.prodURL = "http://"+devAddr, "http://"+prodAddr
	apiAddr := testenv.FreeAddr(t)
	e.apiURL = "http://" + apiAddr
	e.regAddr = testenv.FreeAddr(t)
	ws, err := demo.Prepare(context.Background(), demo.Options{Dir: filepath.Join(short, "demo"), DevAddr: devAddr, ProdAddr: prodAddr})
	if err != nil {
		t.Fatal(err)
	}
	e.ws = ws
	if edit != nil {
		edit(e, short)
	}
	e.bin = buildSlipway(t, short)
	e.args = []string{"serve", "--config", ws.Config, "--data-dir", ws.DataDir, "--api-addr", apiAddr, "--registry-addr", e.regAddr}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
		stopEnvironments(t, ws.DataDir, demo.AppName, "dev", "prod")
	})
	e.startServe()
	tok, err := os.ReadFile(filepath.Join(ws.DataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	token = strings.TrimSpace(string(tok))
	e.cliArgs = []string{"--data-dir", ws.DataDir}
	return e, token
}

func TestDemoEndToEnd(t *testing.T) {
	// Every event goes to a receiver of this test, signed.
	t.Setenv("E2E_NOTIFY_SECRET", "e2e-secret")
	hooks := startNotifyReceiver(t, "e2e-secret")
	e, token := startDemo(t, false, func(e *env, _ string) {
		ws := e.ws
		// prod gets a variable that one commit below reacts to, so that a
		// commit can pass on dev and fail on prod.
		cfg, err := os.ReadFile(ws.Config)
		if err != nil {
			t.Fatal(err)
		}
		cfg = bytes.Replace(cfg, []byte("- name: prod\n"), []byte("- name: prod\n    env:\n      E2E_PROD: \"1\"\n"), 1)
		cfg = append(cfg, hooks.config()...)
		writeFile(t, ws.Config, string(cfg))
	})
	ws := e.ws

	// The first commit goes to dev, and the release branch (at the same
	// commit) takes it to prod.
	c0 := git(t, ws.Bare, "rev-parse", "master")
	e.waitFor("c0 on prod", func() bool {
		p := envOf(e.status(), "prod")
		return p.Commit != nil && *p.Commit == c0 && p.Healthy && p.Rollout == nil
	})
	rc0 := *envOf(e.status(), "prod").Release
	if got := version(e.devURL); got != c0 {
		t.Errorf("dev's /version = %s, want %s", got, c0)
	}
	e.checkTruth(c0, rc0)

	// A push to master reaches dev.
	pushed := time.Now()
	c1 := e.push("Say hi", func(dir string) {
		out, err := exec.Command("sh", "-c", `cd "$0" && grep -rl 'Hello, ' --include='*.go' . | xargs sed -i 's/\([^A-Za-z]\)Hello, /\1Hi, /'`, dir).CombinedOutput()
		if err != nil {
			t.Fatalf("edit the greeting: %v\n%s", err, out)
		}
	})
	e.waitFor("c1 on dev", func() bool { return version(e.devURL) == c1 })
	e.logPushToDev(c1, pushed, time.Now())
	e.waitFor("c1 verified", func() bool {
		d := envOf(e.status(), "dev")
		return d.Commit != nil && *d.Commit == c1
	})
	e.checkLatest(c1)
	if st := e.status(); len(st.Pending) != 1 || st.Pending[0].Hash != c1 {
		t.Errorf("pending = %+v, want c1", st.Pending)
	}

	// slipway release takes it to prod, without dropping a request.
	l := startLoad(e.prodURL, 4)
	started := time.Now()
	out, errOut, code := e.slipway("release")
	t.Logf("measured: slipway release → 4 prod replicas serving c1: %s", time.Since(started).Round(time.Millisecond))
	l.finish(t, "release")
	if code != 0 {
		t.Fatalf("release: exit %d\n%s%s", code, out, errOut)
	}
	rc1 := *envOf(e.status(), "prod").Release
	if !strings.Contains(out, rc1+" ("+c1[:7]+") is live on prod") {
		t.Errorf("release printed %q", out)
	}
	e.checkTruth(c1, rc1)

	// A non-fast-forward push to release is refused; prod is untouched and
	// the branch is pointed back.
	git(t, ws.Clone, "push", "-q", "-f", "origin", c0+":release")
	e.waitFor("release pointed back", func() bool { return git(t, ws.Bare, "rev-parse", "release") == c1 })
	if lf := envOf(e.status(), "prod").LastFailure; lf == nil || !strings.Contains(*lf, "not a fast-forward") {
		t.Errorf("prod's last failure = %s, want the refusal", deref(lf))
	}
	e.checkTruth(c1, rc1)

	// A commit that fails on dev (its tests fail) cannot be released.
	c2 := e.push("Break a test", func(dir string) {
		writeFile(t, filepath.Join(dir, "zz_broken_test.go"), "package main\n\nimport \"testing\"\n\nfunc TestBroken(t *testing.T) { t.Fatal(\"broken on purpose\") }\n")
	})
	e.waitFor("c2 failed on dev", func() bool {
		d := envOf(e.status(), "dev")
		return d.LastFailure != nil && strings.Contains(*d.LastFailure, c2[:7])
	})
	if got := version(e.devURL); got != c1 {
		t.Errorf("dev's /version after a failed build = %s, want c1 %s", got, c1)
	}
	out, errOut, code = e.slipway("release", c2)
	if code != 1 || !strings.Contains(errOut, "failed on dev") {
		t.Errorf("release of a failed commit: exit %d, %q %q", code, out, errOut)
	}
	e.checkTruth(c1, rc1)

	// A commit that passes dev but does not start on prod rolls back by itself.
	c3 := e.push("Work on dev only", func(dir string) {
		os.Remove(filepath.Join(dir, "zz_broken_test.go"))
		writeFile(t, filepath.Join(dir, "zz_prod_only.go"), "package main\n\nimport \"os\"\n\nfunc init() {\n\tif os.Getenv(\"E2E_PROD\") != \"\" {\n\t\tos.Exit(3)\n\t}\n}\n")
	})
	e.waitFor("c3 verified on dev", func() bool {
		d := envOf(e.status(), "dev")
		return d.Commit != nil && *d.Commit == c3
	})
	l = startLoad(e.prodURL, 4)
	out, errOut, code = e.slipway("release", c3)
	l.finish(t, "a failing release")
	if code != 1 || !strings.Contains(out, "rolled-back") || !strings.Contains(out, "rolled back to "+rc1) {
		t.Errorf("failing release: exit %d, %q %q", code, out, errOut)
	}
	e.checkTruth(c1, rc1)

	// slipway rollback restores the previous release.
	l = startLoad(e.prodURL, 4)
	started = time.Now()
	out, errOut, code = e.slipway("rollback")
	t.Logf("measured: slipway rollback → 4 prod replicas serving c0: %s", time.Since(started).Round(time.Millisecond))
	l.finish(t, "rollback")
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	e.checkTruth(c0, rc0)

	// serve killed (SIGKILL) in the middle of a prod rollout and started
	// again ends with prod on one version, recorded.
	c4 := e.push("Work on prod again", func(dir string) { os.Remove(filepath.Join(dir, "zz_prod_only.go")) })
	e.waitFor("c4 verified on dev", func() bool {
		d := envOf(e.status(), "dev")
		return d.Commit != nil && *d.Commit == c4
	})
	e.checkLatest(c4)
	out, errOut, code = e.slipway("release", "--no-wait", "-o", "json", c4)
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
	c := api.NewClient(e.apiURL, "")
	e.waitFor("the prod rollout to start", func() bool {
		d, err := c.Deployment(context.Background(), "", rel.ID)
		return err == nil && d.Step == "deploy"
	})
	e.kill()
	e.startServe()
	d, err := c.Wait(context.Background(), "", rel.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("release across the restart: %s (%s) %s", d.State, d.Note, d.Reason)
	if d.State != "succeeded" || d.Note != "finished after restart" {
		t.Errorf("release across a restart: %s (%s): %s", d.State, d.Note, d.Reason)
	}
	e.waitFor("prod healthy", func() bool { p := envOf(e.status(), "prod"); return p.Healthy && p.Rollout == nil })
	e.checkTruth(c4, rel.Release)
	if p := envOf(e.status(), "prod"); p.Replicas.Ready != 4 || p.Replicas.Desired != 4 {
		t.Errorf("prod replicas %+v, want 4/4", p.Replicas)
	}

	// Each flow's event reached the receiver, across the restart.
	hooks.waitFor("verified dev "+c1, "released prod "+c1, "build.failed dev "+c2, "auto_rollback prod "+c3,
		"rolled_back prod "+c0, "verified dev "+c4, "released prod "+c4)
	out, errOut, code = e.slipway("notifications", "--state", "failed")
	if code != 0 || !strings.Contains(out, "No notifications yet") {
		t.Errorf("notifications --state failed: exit %d, %q %q", code, out, errOut)
	}

	// The CLI's text output, as a user sees it.
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("SLIPWAY_SERVER", e.apiURL)
			env.Setenv("SLIPWAY_TOKEN", token)
			env.Setenv("PROD_COMMIT", c4[:7])
			env.Setenv("PROD_RELEASE", rel.Release)
			return nil
		},
	})
}

// logPushToDev reports how long commit took from push to dev serving it,
// and where the time went.
func (e *env) logPushToDev(commit string, pushed, serving time.Time) {
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(e.ws.DataDir, ledger.FileName))
	if err != nil {
		e.t.Log(err)
		return
	}
	defer store.Close()
	b, err := store.LatestBuild(ctx, commit)
	if err != nil {
		e.t.Log(err)
		return
	}
	d, err := store.Deployments().LatestForCommit(ctx, "dev", ledger.KindDeploy, commit)
	if err != nil {
		e.t.Log(err)
		return
	}
	took := serving.Sub(pushed)
	own := b.TestDuration + b.BuildDuration
	e.t.Logf("measured: push → dev serving %s: %s = the app's go test %s + go build %s + %s more: noticed after %s, build's own work (checkout, image, push) %s, rollout of 2 replicas %s",
		commit[:7], took.Round(time.Millisecond), b.TestDuration.Round(time.Millisecond), b.BuildDuration.Round(time.Millisecond),
		(took - own).Round(time.Millisecond), d.CreatedAt.Sub(pushed).Round(time.Millisecond),
		(b.Finished.Sub(b.Created) - own).Round(time.Millisecond), serving.Sub(b.Finished).Round(time.Millisecond))
}

// stopEnvironments stops the environments of app that serve left running.
func stopEnvironments(t *testing.T, dataDir, app string, envs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := local.New(local.Options{Dir: filepath.Join(dataDir, "run", app), App: app,
		LegacyDir: filepath.Join(dataDir, "run")})
	if err != nil {
		t.Log(err)
		return
	}
	for _, env := range envs {
		if err := b.Stop(ctx, env); err != nil {
			t.Logf("stop %s: %v", env, err)
		}
	}
}
