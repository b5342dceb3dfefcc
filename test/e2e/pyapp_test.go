//go:build integration

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// pyDeadline bounds each wait of TestPythonAppEndToEnd: a Dockerfile
// build on vfs storage takes minutes on a busy machine.
const pyDeadline = 20 * time.Minute

// TestPythonAppEndToEnd runs a Python service built from its Dockerfile
// (test/pyapp, on a Debian base made with debootstrap) through the whole
// flow: a push reaches dev, slipway release takes it to prod, slipway
// rollback brings the earlier release back; each environment's replicas
// run the image's python3 on the local runtime.
func TestPythonAppEndToEnd(t *testing.T) {
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	testenv.LookPath(t, "buildah")
	ctx := context.Background()
	short, err := os.MkdirTemp("", "swpy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	e := &env{t: t}
	devAddr, prodAddr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	e.devURL, e.prodURL, e.apiURL = "http://"+devAddr, "http://"+prodAddr, "http://"+apiAddr
	e.regAddr = testenv.FreeAddr(t)
	e.ws.DataDir = filepath.Join(short, "data")
	e.ws.Bare = filepath.Join(short, "pyapp.git")
	e.ws.Clone = filepath.Join(short, "clone")
	e.ws.Config = filepath.Join(short, "slipway.yaml")

	// The Debian base goes into the embedded registry's files first, so
	// that the first build finds it.
	pushBase(t, ctx, filepath.Join(e.ws.DataDir, "registry"), e.regAddr)

	// The app's repository: master and release at the first commit.
	git(t, short, "init", "-q", "--bare", "-b", "master", e.ws.Bare)
	if err := os.CopyFS(e.ws.Clone, os.DirFS(testenv.PyAppDir(t))); err != nil {
		t.Fatal(err)
	}
	git(t, e.ws.Clone, "init", "-q", "-b", "master")
	git(t, e.ws.Clone, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
	git(t, e.ws.Clone, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "pyapp")
	git(t, e.ws.Clone, "config", "user.name", "Slipway Test")
	git(t, e.ws.Clone, "config", "user.email", "test@slipway.dev")
	git(t, e.ws.Clone, "remote", "add", "origin", e.ws.Bare)
	git(t, e.ws.Clone, "push", "-q", "origin", "HEAD:master", "HEAD:release")
	c0 := git(t, e.ws.Clone, "rev-parse", "HEAD")

	writeFile(t, e.ws.Config, fmt.Sprintf(`app: pyapp
repo:
  url: %s
  poll: 300ms
build:
  kind: dockerfile
  timeout: 20m
  args:
    BASE: %s/pybase:bookworm
release:
  command: [python3, /app/app.py, migrate]
environments:
  - name: dev
    listen: %s
    replicas: 1
    rollout: {readyTimeout: 60s, gracePeriod: 5s}
    smoke:
      command: curl -fsS "$SLIPWAY_URL/version" | grep -q '"commit"'
  - name: prod
    listen: %s
    replicas: 2
    rollout: {readyTimeout: 60s, gracePeriod: 5s}
`, e.ws.Bare, e.regAddr, devAddr, prodAddr))
	e.bin = buildSlipway(t, short)
	e.args = []string{"serve", "--config", e.ws.Config, "--data-dir", e.ws.DataDir, "--api-addr", apiAddr, "--registry-addr", e.regAddr}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
		stopEnvironments(t, e.ws.DataDir, "pyapp", "dev", "prod")
	})
	e.startServe()
	tok, err := os.ReadFile(filepath.Join(e.ws.DataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TOKEN", strings.TrimSpace(string(tok)))

	// The first commit is built from the Dockerfile, runs on dev, and the
	// release branch (at the same commit) takes it to prod.
	e.waitLong("c0 on prod", func() bool {
		p := envOf(e.appStatus("pyapp"), "prod")
		return p.Commit != nil && *p.Commit == c0 && p.Healthy && p.Rollout == nil
	})
	rc0 := *envOf(e.appStatus("pyapp"), "prod").Release
	e.checkPython(e.devURL, c0, "Hello from pyapp")
	e.checkPython(e.prodURL, c0, "Hello from pyapp")
	if iso := envOf(e.appStatus("pyapp"), "prod").Isolation; os.Geteuid() == 0 && (iso == nil || *iso != string(deploy.IsolationSandbox)) {
		t.Errorf("prod's isolation = %s, want %s (as root): python3 must run on the image's own libraries", deref(iso), deploy.IsolationSandbox)
	}

	// A push to master reaches dev; its dependency step comes from the cache.
	pushed := time.Now()
	c1 := e.push("Say hi", func(dir string) {
		app := filepath.Join(dir, "app.py")
		b, err := os.ReadFile(app)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, app, strings.Replace(string(b), `GREETING = "Hello from pyapp"`, `GREETING = "Hi from pyapp"`, 1))
	})
	e.waitLong("c1 verified on dev", func() bool {
		d := envOf(e.appStatus("pyapp"), "dev")
		return d.Commit != nil && *d.Commit == c1 && d.Healthy && d.Rollout == nil
	})
	t.Logf("measured: push → c1 (Dockerfile build, dependencies cached) serving on dev: %s", time.Since(pushed).Round(time.Second))
	e.checkPython(e.devURL, c1, "Hi from pyapp")
	client := api.NewClient(e.apiURL, strings.TrimSpace(string(tok)))
	e.checkSteps(client, "dev", c1, "release", "smoke")

	// slipway release takes it to prod, the same image.
	out, errOut, code := e.slipway("release", "--app", "pyapp")
	if code != 0 {
		t.Fatalf("release: exit %d\n%s%s", code, out, errOut)
	}
	prod := envOf(e.appStatus("pyapp"), "prod")
	rc1 := *prod.Release
	e.checkPython(e.prodURL, c1, "Hi from pyapp")
	e.checkImage("pyapp", c1, *prod.Digest, rc1)
	e.checkSteps(client, "prod", c1, "release")

	// slipway rollback brings c0 back.
	out, errOut, code = e.slipway("rollback", "--app", "pyapp")
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	prod = envOf(e.appStatus("pyapp"), "prod")
	if prod.Release == nil || *prod.Release != rc0 {
		t.Errorf("prod's release after the rollback = %s, want %s", deref(prod.Release), rc0)
	}
	e.checkPython(e.prodURL, c0, "Hello from pyapp")
	e.checkImage("pyapp", c0, *prod.Digest, rc0)
	if got := git(t, e.ws.Bare, "rev-parse", "release"); got != c0 {
		t.Errorf("git: release at %s after the rollback, want %s", got, c0)
	}
}

// checkSteps checks that env's last deployment, of commit, ran each of
// steps and that they passed; a release step ran the Python app's own
// migrate command from its image, before the rollout.
func (e *env) checkSteps(client *api.Client, env, commit string, steps ...string) {
	e.t.Helper()
	ctx := context.Background()
	h, err := client.History(ctx, "pyapp", env, 1)
	if err != nil || len(h.Deployments) == 0 {
		e.t.Fatalf("history of %s: %v, %d rows", env, err, len(h.Deployments))
	}
	d, err := client.DeploymentDetail(ctx, "pyapp", h.Deployments[0].ID)
	if err != nil {
		e.t.Fatal(err)
	}
	if d.Commit != commit {
		e.t.Fatalf("%s's last deployment is of %s, want %s", env, d.Commit, commit)
	}
	byName := map[string]ledger.Step{}
	var names []string
	for _, s := range d.Steps {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	for _, name := range steps {
		s, ok := byName[name]
		if !ok || s.State != ledger.StepSucceeded {
			e.t.Errorf("%s's deployment %d of %s: step %s %s (steps %v)", env, d.ID, commit[:7], name, s.State, names)
		}
	}
	if rel, ok := byName["release"]; ok {
		if !strings.Contains(rel.Message, `"msg": "data ready", "commit": "`+commit+`"`) {
			e.t.Errorf("%s's release step: %q; want the output of the image's migrate command", env, rel.Message)
		}
		if dep := byName["deploy"]; dep.Started.Before(rel.Finished) {
			e.t.Errorf("%s: the rollout started at %s, before the release phase ended at %s", env, dep.Started, rel.Finished)
		}
	}
}

// pushBase serves the registry's files in dir on addr for a moment and
// pushes the Debian base with python3 into it.
func pushBase(t *testing.T, ctx context.Context, dir, addr string) {
	t.Helper()
	reg, _, err := registry.Listen(ctx, addr, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	testenv.PushDebianPython(t, ctx, addr+"/pybase:bookworm")
}

// waitLong is waitFor with pyDeadline.
func (e *env) waitLong(what string, cond func() bool) {
	e.t.Helper()
	end := time.Now().Add(pyDeadline)
	for !cond() {
		if time.Now().After(end) {
			e.t.Fatalf("gave up waiting for %s after %s", what, pyDeadline)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// checkPython checks that the Python service at url answers for commit:
// its /version, and its greeting at /.
func (e *env) checkPython(url, commit, greeting string) {
	e.t.Helper()
	if got := version(url); got != commit {
		e.t.Errorf("%s/version = %q, want %s", url, got, commit)
	}
	resp, err := http.Get(url + "/")
	if err != nil {
		e.t.Errorf("GET %s/: %v", url, err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := greeting + " " + commit[:7] + "\n"; resp.StatusCode != 200 || string(body) != want {
		e.t.Errorf("GET %s/: %s %q, want 200 %q", url, resp.Status, body, want)
	}
}

// checkImage checks that the registry's sha-, short, live and RC tags of
// app are on digest, the image the environment runs.
func (e *env) checkImage(app, commit, digest, rc string) {
	e.t.Helper()
	reg := registry.NewClient()
	for _, tag := range []string{"sha-" + commit, commit[:7], "live", rc} {
		d, err := reg.Digest(context.Background(), e.regAddr+"/"+app, tag)
		if err != nil || d.String() != digest {
			e.t.Errorf("registry %s:%s on %v (%v), want %s", app, tag, d, err, digest)
		}
	}
}
