//go:build integration

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// TestKubernetesPythonApp runs the Python service (test/pyapp), built from
// its Dockerfile by buildah, through the whole flow with runtime:
// kubernetes on the test cluster: its first commit on dev and prod, a push
// reaching dev, slipway release, slipway rollback. Its Dockerfile exposes
// port 8000 and the configuration sets no build.port: the Deployments
// listen there. kwok runs no container: what runs is checked through the
// cluster (the Deployment's image digest, commit label, port and rollout),
// slipway status, history, the registry's tags and git.
func TestKubernetesPythonApp(t *testing.T) {
	k := newKubeCluster(t)
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	testenv.LookPath(t, "buildah")
	ctx := context.Background()
	start := time.Now()
	step := func(what string) { t.Logf("%s: %s", time.Since(start).Round(100*time.Millisecond), what) }
	short, err := os.MkdirTemp("", "swkpy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	e := &env{t: t}
	apiAddr := testenv.FreeAddr(t)
	e.apiURL = "http://" + apiAddr
	e.regAddr = testenv.FreeAddr(t)
	e.ws.DataDir = filepath.Join(short, "data")
	e.ws.Bare = filepath.Join(short, "pyapp.git")
	e.ws.Clone = filepath.Join(short, "clone")
	e.ws.Config = filepath.Join(short, "slipway.yaml")
	pushBase(t, ctx, filepath.Join(e.ws.DataDir, "registry"), e.regAddr)

	// The app's repository, its Dockerfile exposing 8000 (the service
	// reads PORT): master and release at the first commit.
	git(t, short, "init", "-q", "--bare", "-b", "master", e.ws.Bare)
	if err := os.CopyFS(e.ws.Clone, os.DirFS(testenv.PyAppDir(t))); err != nil {
		t.Fatal(err)
	}
	editFile(t, filepath.Join(e.ws.Clone, "Dockerfile"), "EXPOSE 8080", "EXPOSE 8000")
	git(t, e.ws.Clone, "init", "-q", "-b", "master")
	git(t, e.ws.Clone, "config", "user.name", "Slipway Test")
	git(t, e.ws.Clone, "config", "user.email", "test@slipway.dev")
	git(t, e.ws.Clone, "add", ".")
	git(t, e.ws.Clone, "commit", "-q", "-m", "pyapp")
	git(t, e.ws.Clone, "remote", "add", "origin", e.ws.Bare)
	git(t, e.ws.Clone, "push", "-q", "origin", "HEAD:master", "HEAD:release")
	c0 := git(t, e.ws.Clone, "rev-parse", "HEAD")

	writeFile(t, e.ws.Config, fmt.Sprintf(`app: pyapp
repo:
  url: %s
  poll: 300ms
runtime: kubernetes
kubernetes:
  kubeconfig: %s
  namespace: "%s-{{.Environment}}"
build:
  kind: dockerfile
  timeout: 20m
  args:
    BASE: %s/pybase:bookworm
release:
  command: [python3, /app/app.py, migrate]
environments:
  - name: dev
    replicas: 1
  - name: prod
    replicas: 2
`, e.ws.Bare, k.kubeconfig, k.prefix, e.regAddr))
	if out, errOut, code := runCLI("validate", "--config", e.ws.Config); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
	}
	e.bin = buildSlipway(t, short)
	e.args = []string{"serve", "--config", e.ws.Config, "--data-dir", e.ws.DataDir, "--api-addr", apiAddr, "--registry-addr", e.regAddr}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
	e.startServe()
	tok, err := os.ReadFile(filepath.Join(e.ws.DataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TOKEN", strings.TrimSpace(string(tok)))
	client := api.NewClient(e.apiURL, strings.TrimSpace(string(tok)))
	step("slipway built and serving")

	settled := func(env, commit string) bool {
		s := envOf(e.appStatus("pyapp"), env)
		return s.Commit != nil && *s.Commit == commit && s.Healthy && s.Rollout == nil
	}
	// onCluster checks that env's Deployment runs the digest built for
	// commit (the registry's sha- tag), as status says, on port 8000, and
	// that its rollout is complete.
	onCluster := func(env, commit string) {
		t.Helper()
		ns := k.prefix + "-" + env
		s := envOf(e.appStatus("pyapp"), env)
		k.checkDeployment(ns, "pyapp", s, commit)
		want := e.regAddr + "/pyapp@" + e.digest("pyapp", "sha-"+commit)
		d, err := k.cs.AppsV1().Deployments(ns).Get(ctx, "pyapp", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := d.Spec.Template.Spec.Containers[0]
		if c.Image != want || deref(s.Digest) != want[strings.Index(want, "@")+1:] {
			t.Errorf("%s: the Deployment runs %s, status says digest %s; want %s, the image built for %s", ns, c.Image, deref(s.Digest), want, commit[:7])
		}
		var port string
		for _, ev := range c.Env {
			if ev.Name == "PORT" {
				port = ev.Value
			}
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8000 || port != "8000" {
			t.Errorf("%s: container ports %v, PORT=%q; want 8000, the port the image exposes", ns, c.Ports, port)
		}
		if out, ok := k.kubectl("-n", ns, "rollout", "status", "deployment/pyapp", "--timeout=10s"); ok && !strings.Contains(out, "successfully rolled out") {
			t.Errorf("%s: kubectl rollout status: %s", ns, out)
		}
	}

	// releaseJobs returns how many release-phase Jobs env's namespace has
	// for commit's image, and checks that each runs the image's own
	// python3 with the configured command.
	releaseJobs := func(env, commit string) int {
		t.Helper()
		ns := k.prefix + "-" + env
		jobs, err := k.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelReleasePhase})
		if err != nil {
			t.Fatal(err)
		}
		want := e.regAddr + "/pyapp@" + e.digest("pyapp", "sha-"+commit)
		n := 0
		for _, j := range jobs.Items {
			c := j.Spec.Template.Spec.Containers[0]
			if c.Image != want {
				continue
			}
			n++
			if cmd := []string{"python3", "/app/app.py", "migrate"}; !slices.Equal(c.Command, cmd) || j.Status.Succeeded != 1 {
				t.Errorf("%s: Job %s runs %q (%d succeeded); want %q, succeeded", ns, j.Name, c.Command, j.Status.Succeeded, cmd)
			}
		}
		return n
	}

	// The first commit is built from the Dockerfile, runs on dev, and the
	// release branch (at the same commit) takes it to prod.
	e.waitLong("c0 on prod", func() bool { return settled("prod", c0) })
	rc0 := *envOf(e.appStatus("pyapp"), "prod").Release
	onCluster("dev", c0)
	onCluster("prod", c0)
	e.checkImage("pyapp", c0, *envOf(e.appStatus("pyapp"), "prod").Digest, rc0)
	step("c0 built by buildah, on dev and prod")

	// A push to master reaches dev, built again by buildah.
	c1 := e.push("Say hi", func(dir string) {
		editFile(t, filepath.Join(dir, "app.py"), `GREETING = "Hello from pyapp"`, `GREETING = "Hi from pyapp"`)
	})
	e.waitLong("c1 verified on dev", func() bool { return settled("dev", c1) })
	onCluster("dev", c1)
	onCluster("prod", c0)
	step("c1 built and verified on dev")

	// slipway release takes the same image to prod.
	out, errOut, code := e.slipway("release", "--app", "pyapp")
	if code != 0 {
		t.Fatalf("release: exit %d\n%s%s", code, out, errOut)
	}
	prod := envOf(e.appStatus("pyapp"), "prod")
	rc1 := deref(prod.Release)
	if rc1 == rc0 || !strings.Contains(out, rc1+" ("+c1[:7]+") is live on prod") {
		t.Errorf("release printed %q (release before: %s)", out, rc0)
	}
	if dev := envOf(e.appStatus("pyapp"), "dev"); deref(dev.Digest) != deref(prod.Digest) {
		t.Errorf("prod runs %s, dev %s: want the same image", deref(prod.Digest), deref(dev.Digest))
	}
	onCluster("prod", c1)
	e.checkImage("pyapp", c1, *prod.Digest, rc1)
	for _, env := range []string{"dev", "prod"} {
		if n := releaseJobs(env, c1); n != 1 {
			t.Errorf("%s: %d release-phase Jobs of c1; want 1, before its rollout", env, n)
		}
	}
	prodJobs := releaseJobs("prod", c0)
	if got := git(t, e.ws.Bare, "rev-parse", rc1+"^{commit}"); got != c1 {
		t.Errorf("git: tag %s on %s, want %s", rc1, got, c1)
	}
	step("c1 released to prod")

	// slipway rollback brings c0 back.
	out, errOut, code = e.slipway("rollback", "--app", "pyapp")
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	e.waitFor("prod back on c0", func() bool { return settled("prod", c0) })
	prod = envOf(e.appStatus("pyapp"), "prod")
	if deref(prod.Release) != rc0 {
		t.Errorf("prod's release after the rollback = %s, want %s", deref(prod.Release), rc0)
	}
	onCluster("prod", c0)
	e.checkImage("pyapp", c0, *prod.Digest, rc0)
	if n := releaseJobs("prod", c0); n != prodJobs {
		t.Errorf("prod: %d release-phase Jobs of c0 after the rollback, %d before; a rollback runs none", n, prodJobs)
	}
	if got := git(t, e.ws.Bare, "rev-parse", "release"); got != c0 {
		t.Errorf("git: release at %s after the rollback, want %s", got, c0)
	}
	step("rolled back to c0")

	// slipway status and history say the same.
	out, errOut, code = e.slipway("status", "--app", "pyapp")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("slipway status:\n%s", out)
	for env, commit := range map[string]string{"dev": c1, "prod": c0} {
		if !hasRow(out, "pyapp", env, commit[:7]) && !hasEnvRow(out, env, commit[:7]) {
			t.Errorf("slipway status has no row of %s at %s", env, commit[:7])
		}
	}
	h, err := client.History(ctx, "pyapp", "prod", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range h.Deployments {
		if d.State == ledger.StateSucceeded {
			got = append(got, string(d.Kind)+" "+d.Commit[:7]+" "+d.ReleaseName)
		}
	}
	want := []string{"rollback " + c0[:7] + " " + rc0, "release " + c1[:7] + " " + rc1}
	if len(got) < 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("prod's history, newest first: %q; want it to start with %q", got, want)
	}
	if hist, ok := k.kubectl("-n", k.prefix+"-prod", "rollout", "history", "deployment/pyapp"); ok {
		t.Logf("kubectl rollout history of prod:\n%s", hist)
		for _, w := range []string{rc1 + " (commit " + c1[:12] + ") to prod: release", rc0 + " (commit " + c0[:12] + ") to prod: rollback"} {
			if !strings.Contains(hist, w) {
				t.Errorf("kubectl rollout history lacks %q", w)
			}
		}
	}
	step("done")
}

// digest is the digest of app's image tag in the test's registry.
func (e *env) digest(app, tag string) string {
	e.t.Helper()
	d, err := registry.NewClient().Digest(context.Background(), e.regAddr+"/"+app, tag)
	if err != nil {
		e.t.Fatalf("registry %s:%s: %v", app, tag, err)
	}
	return d.String()
}

// hasEnvRow reports whether a line of a one-app text status starts with
// env and names commit.
func hasEnvRow(out, env, commit string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == env && strings.Contains(line, commit) {
			return true
		}
	}
	return false
}
