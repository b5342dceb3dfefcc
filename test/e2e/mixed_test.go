//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/testenv"
)

// TestGoAndPythonApps runs a Go app (the sample service, built by slipway's
// Go builder) and a Python app (test/pyapp, built from its Dockerfile by
// buildah) in one slipway serve, local runtime: both reach dev and prod; a
// push to each reaches its dev; then, under load on both prod
// environments, each app is released and rolled back, and not one request
// fails.
func TestGoAndPythonApps(t *testing.T) {
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	testenv.LookPath(t, "buildah")
	ctx := context.Background()
	start := time.Now()
	step := func(what string) { t.Logf("%s: %s", time.Since(start).Round(100*time.Millisecond), what) }
	short, err := os.MkdirTemp("", "swmix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	m := &multi{env: &env{t: t}, apps: map[string]*multiApp{}, dataDir: filepath.Join(short, "data")}
	m.apiURL = "http://" + testenv.FreeAddr(t)
	m.regAddr = testenv.FreeAddr(t)
	goApp := &multiApp{name: demo.AppName, envs: []string{"dev", "prod"}}
	pyApp := &multiApp{name: "pyapp", envs: []string{"dev", "prod"}}
	for _, a := range []*multiApp{goApp, pyApp} {
		a.urls = map[string]string{}
		for _, e := range a.envs {
			a.urls[e] = "http://" + testenv.FreeAddr(t)
		}
		m.apps[a.name] = a
	}
	pushBase(t, ctx, filepath.Join(m.dataDir, "registry"), m.regAddr)

	// The Go app: the demo's repository and configuration, 2 replicas on
	// prod.
	goApp.ws, err = demo.Prepare(ctx, demo.Options{Dir: filepath.Join(short, "go"),
		DevAddr: hostOf(goApp.urls["dev"]), ProdAddr: hostOf(goApp.urls["prod"])})
	if err != nil {
		t.Fatal(err)
	}
	gc := demo.Config(hostOf(goApp.urls["dev"]), hostOf(goApp.urls["prod"]))
	gc.Repo.URL = goApp.ws.Bare
	gc.Repo.Poll = 300 * time.Millisecond
	for i := range gc.Environments {
		gc.Environments[i].Rollout.GracePeriod = 5 * time.Second
		if gc.Environments[i].Name == "prod" {
			gc.Environments[i].Replicas = 2
		}
	}
	// The Python app: test/pyapp in a repository of its own.
	pyDir := filepath.Join(short, "py")
	pyApp.ws.Bare = filepath.Join(pyDir, "pyapp.git")
	pyApp.ws.Clone = filepath.Join(pyDir, "clone")
	git(t, short, "init", "-q", "--bare", "-b", "master", pyApp.ws.Bare)
	if err := os.CopyFS(pyApp.ws.Clone, os.DirFS(testenv.PyAppDir(t))); err != nil {
		t.Fatal(err)
	}
	git(t, pyApp.ws.Clone, "init", "-q", "-b", "master")
	git(t, pyApp.ws.Clone, "config", "user.name", "Slipway Test")
	git(t, pyApp.ws.Clone, "config", "user.email", "test@slipway.dev")
	git(t, pyApp.ws.Clone, "add", ".")
	git(t, pyApp.ws.Clone, "commit", "-q", "-m", "pyapp")
	git(t, pyApp.ws.Clone, "remote", "add", "origin", pyApp.ws.Bare)
	git(t, pyApp.ws.Clone, "push", "-q", "origin", "HEAD:master", "HEAD:release")

	var cfg bytes.Buffer
	if err := config.WriteSet(&cfg, &config.Set{Multi: true, BuildConcurrency: 2, Apps: []*config.Config{gc}}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&cfg, `  - app: pyapp
    repo: {url: %s, poll: 300ms}
    build:
      kind: dockerfile
      timeout: 20m
      args: {BASE: %s/pybase:bookworm}
    environments:
      - name: dev
        listen: %s
        replicas: 1
        rollout: {readyTimeout: 60s, gracePeriod: 5s}
      - name: prod
        listen: %s
        replicas: 2
        rollout: {readyTimeout: 60s, gracePeriod: 5s}
`, pyApp.ws.Bare, m.regAddr, hostOf(pyApp.urls["dev"]), hostOf(pyApp.urls["prod"]))
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
		for _, a := range []*multiApp{goApp, pyApp} {
			stopEnvironments(t, m.dataDir, a.name, a.envs...)
		}
	})
	m.startServe()
	tok, err := os.ReadFile(filepath.Join(m.dataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TOKEN", strings.TrimSpace(string(tok)))
	step("slipway serving both apps")

	// Each app's first commit reaches dev and prod.
	c0 := map[string]string{}
	rc0 := map[string]string{}
	for _, a := range []*multiApp{goApp, pyApp} {
		c0[a.name] = git(t, a.ws.Bare, "rev-parse", "master")
	}
	for _, a := range []*multiApp{goApp, pyApp} {
		m.waitLong(a.name+" c0 on prod", func() bool { return m.runs(a.name, "prod", c0[a.name]) })
		rc0[a.name] = deref(envOf(m.appStatus(a.name), "prod").Release)
		m.checkEnv(a.name, "dev", c0[a.name])
		m.checkRelease(a.name, c0[a.name], rc0[a.name])
	}
	if iso := envOf(m.appStatus("pyapp"), "prod").Isolation; os.Geteuid() == 0 && deref(iso) != "sandbox" {
		t.Errorf("pyapp prod's isolation = %s, want sandbox (as root): python3 must run on the image's own libraries", deref(iso))
	}
	step("both apps' first commit on dev and prod")

	// A push to each reaches its dev; prod stays.
	c1 := map[string]string{}
	c1[goApp.name] = goApp.push(t, "Say hi", func(dir string) {
		writeFile(t, filepath.Join(dir, "zz_hi.go"), "package main\n\nconst hi = \"hi\"\n")
	})
	c1[pyApp.name] = pyApp.push(t, "Say hi", func(dir string) {
		editFile(t, filepath.Join(dir, "app.py"), `GREETING = "Hello from pyapp"`, `GREETING = "Hi from pyapp"`)
	})
	for _, a := range []*multiApp{goApp, pyApp} {
		m.waitLong(a.name+" c1 on dev", func() bool { return m.runs(a.name, "dev", c1[a.name]) })
		m.checkEnv(a.name, "dev", c1[a.name])
		m.checkRelease(a.name, c0[a.name], rc0[a.name])
	}
	step("both apps' c1 verified on dev")

	// Under load on both prod environments: each app released, then rolled
	// back.
	loads := []*load{startLoad(goApp.urls["prod"], 4), startGetLoad(pyApp.urls["prod"], 4)}
	rc1 := map[string]string{}
	for _, a := range []*multiApp{goApp, pyApp} {
		out, code, rc := m.release(a.name)
		if code != 0 || !strings.Contains(out, rc+" ("+c1[a.name][:7]+") is live on prod") {
			t.Fatalf("release %s: exit %d\n%s", a.name, code, out)
		}
		rc1[a.name] = rc
		m.checkRelease(a.name, c1[a.name], rc)
		step(a.name + " released " + rc)
	}
	for _, a := range []*multiApp{goApp, pyApp} {
		out, errOut, code := m.slipway("rollback", "--app", a.name)
		if code != 0 {
			t.Fatalf("rollback %s: exit %d\n%s%s", a.name, code, out, errOut)
		}
		m.checkRelease(a.name, c0[a.name], rc0[a.name])
		step(a.name + " rolled back to " + rc0[a.name])
	}
	for i, l := range loads {
		l.finish(t, []string{goApp.name, pyApp.name}[i]+"'s release and rollback")
	}
	m.checkEnv(pyApp.name, "dev", c1[pyApp.name])
	m.checkEnv(goApp.name, "dev", c1[goApp.name])
	if got := getBody(t, pyApp.urls["prod"]+"/"); got != "Hello from pyapp "+c0[pyApp.name][:7]+"\n" {
		t.Errorf("pyapp prod's / after the rollback: %q", got)
	}
	out, _, _ := m.slipway("status")
	t.Logf("slipway status:\n%s", out)
	for app, envs := range map[string]map[string]string{
		goApp.name: {"dev": c1[goApp.name], "prod": c0[goApp.name]},
		pyApp.name: {"dev": c1[pyApp.name], "prod": c0[pyApp.name]},
	} {
		for env, commit := range envs {
			if !hasRow(out, app, env, commit[:7]) {
				t.Errorf("slipway status has no row of %s %s at %s", app, env, commit[:7])
			}
		}
	}
	m.checkNothingTwice()
	step("done")
}

// startGetLoad is startLoad with GET requests only (of / and /version),
// for a service that takes no PUT.
func startGetLoad(url string, workers int) *load {
	l := &load{url: url, stop: make(chan struct{})}
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			path := []string{"/", "/version"}[i%2]
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(url + path)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("GET %s: %s", path, resp.Status)
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

// getBody is the body of a GET of url; the test fails on an error.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
