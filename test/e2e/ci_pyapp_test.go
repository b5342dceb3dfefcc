//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// ciPythonImage is what the Python service's CI puts into an image at
// commit, without its Dockerfile or slipway's builder: the files of a
// checkout of the commit in /app (one layer, to go on base, the Debian
// base with python3), and the configuration: python3 running app.py as an
// unprivileged user, with the revision label, exposing 8000 (the local
// runtime gives each replica a port of its own through PORT).
func ciPythonImage(t *testing.T, bare, commit string, base v1.Image) ([]ciFile, v1.Config) {
	t.Helper()
	src := ciCheckout(t, bare, commit)
	files := []ciFile{{Name: "app/", Mode: 0o755}}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "Dockerfile" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, ciFile{Name: "app/" + e.Name(), Mode: 0o644, Data: b})
	}
	bc, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return files, v1.Config{
		Entrypoint:   []string{"python3"},
		Cmd:          []string{"/app/app.py"},
		Env:          append(slices.Clone(bc.Config.Env), "APP_COMMIT="+commit, "PYTHONDONTWRITEBYTECODE=1"),
		ExposedPorts: map[string]struct{}{"8000/tcp": {}},
		User:         "65532:65532",
		WorkingDir:   "/app",
		Labels:       map[string]string{build.LabelRevision: commit, "built-by": "ci"},
	}
}

// ciBuildPython builds the Python service at commit as its CI would
// (ciPythonImage on base), pushes the image to ref and returns its digest.
func ciBuildPython(t *testing.T, bare, commit string, base v1.Image, ref string) string {
	t.Helper()
	files, cfg := ciPythonImage(t, bare, commit, base)
	return ciPush(t, base, files, cfg, ref)
}

// TestPythonImagesBuiltByCI runs the Python service (test/pyapp) with
// images its CI builds — not from its Dockerfile: app.py on the Debian
// python3 base, put together with go-containerregistry — both ways slipway
// learns of them. A push to master waits for its image; the CI's image
// found by the registry watch (sha-* tags) goes to dev, is released to prod
// and rolled back; the next push's image, announced through the API, goes
// the same way. Dev and prod are under load the whole time and not one
// request fails. An image naming a commit the repository does not have,
// and a second image for a commit that has one (a tag that moved), are
// refused, by the watch and by the API, with the reason, and nothing of
// them is deployed.
func TestPythonImagesBuiltByCI(t *testing.T) {
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	ctx := context.Background()
	start := time.Now()
	step := func(what string) { t.Logf("%s: %s", time.Since(start).Round(100*time.Millisecond), what) }
	short, err := os.MkdirTemp("", "swpyci")
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
	e.logPath = filepath.Join(short, "serve.log")

	// The CI's base image sits in the registry slipway embeds, as a team's
	// would in its own; slipway is built meanwhile.
	e.bin = filepath.Join(short, "slipway")
	built := make(chan error, 1)
	go func() {
		out, err := exec.Command("go", "build", "-o", e.bin, "slipway.dev/slipway/cmd/slipway").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		built <- err
	}()
	pushBase(t, ctx, filepath.Join(e.ws.DataDir, "registry"), e.regAddr)
	if err := <-built; err != nil {
		t.Fatalf("build slipway: %v", err)
	}
	step("the Debian python3 base in the registry, slipway built")

	// The app's repository: master and release at the first commit.
	git(t, short, "init", "-q", "--bare", "-b", "master", e.ws.Bare)
	if err := os.CopyFS(e.ws.Clone, os.DirFS(testenv.PyAppDir(t))); err != nil {
		t.Fatal(err)
	}
	git(t, e.ws.Clone, "init", "-q", "-b", "master")
	git(t, e.ws.Clone, "config", "user.name", "Slipway Test")
	git(t, e.ws.Clone, "config", "user.email", "test@slipway.dev")
	git(t, e.ws.Clone, "add", ".")
	git(t, e.ws.Clone, "commit", "-q", "-m", "pyapp")
	git(t, e.ws.Clone, "remote", "add", "origin", e.ws.Bare)
	git(t, e.ws.Clone, "push", "-q", "origin", "HEAD:master", "HEAD:release")
	c0 := git(t, e.ws.Clone, "rev-parse", "HEAD")

	watched := e.regAddr + "/ci/pyapp"
	writeFile(t, e.ws.Config, fmt.Sprintf(`app: pyapp
repo:
  url: %s
  poll: 300ms
build:
  kind: image
  image:
    watch: %s
    tags: sha-*
    interval: 300ms
    wait: 5m
environments:
  - name: dev
    listen: %s
    replicas: 1
    rollout: {readyTimeout: 60s, gracePeriod: 5s}
  - name: prod
    listen: %s
    replicas: 2
    rollout: {readyTimeout: 60s, gracePeriod: 5s}
`, e.ws.Bare, watched, devAddr, prodAddr))
	if out, errOut, code := runCLI("validate", "--config", e.ws.Config); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
	}
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
	token := strings.TrimSpace(string(tok))
	t.Setenv("SLIPWAY_TOKEN", token)
	step("slipway serving")

	baseRef, err := name.ParseReference(e.regAddr + "/pybase:bookworm")
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(baseRef)
	if err != nil {
		t.Fatalf("the CI's base image: %v", err)
	}
	dev := func() (string, string) {
		d := envOf(e.appStatus("pyapp"), "dev")
		return deref(d.Commit), deref(d.Digest)
	}
	prod := func() (string, string) {
		p := envOf(e.appStatus("pyapp"), "prod")
		return deref(p.Commit), deref(p.Digest)
	}
	verified := func(envName, commit string) func() bool {
		return func() bool {
			s := envOf(e.appStatus("pyapp"), envName)
			return deref(s.Commit) == commit && s.Healthy && s.Rollout == nil
		}
	}

	// The first commit's image, found by the watch, runs on dev and prod.
	d0 := ciBuildPython(t, e.ws.Bare, c0, base, watched+":sha-"+c0)
	e.waitFor("c0 on prod", verified("prod", c0))
	e.waitFor("c0 on dev", verified("dev", c0))
	if _, d := dev(); d != d0 {
		t.Errorf("dev runs %s, want the CI's image %s", d, d0)
	}
	if _, d := prod(); d != d0 {
		t.Errorf("prod runs %s, want the CI's image %s", d, d0)
	}
	e.checkPython(e.devURL, c0, "Hello from pyapp")
	e.checkPython(e.prodURL, c0, "Hello from pyapp")
	rc0 := deref(envOf(e.appStatus("pyapp"), "prod").Release)
	step("c0 (CI's image, by the watch) on dev and prod")

	// From here on, both environments are under load.
	loads := []*load{startGetLoad(e.devURL, 2), startGetLoad(e.prodURL, 4)}

	// shipped takes commit, whose image digest the CI pushed, from dev to
	// prod and back: release, then rollback to what prod ran before.
	shipped := func(commit, digest, greeting string) {
		t.Helper()
		e.checkPython(e.devURL, commit, greeting)
		if c, d := dev(); c != commit || d != digest {
			t.Errorf("dev runs %s %s, want %s with the CI's image %s", c, d, commit[:7], digest)
		}
		wasCommit, wasDigest := prod()
		wasRelease := deref(envOf(e.appStatus("pyapp"), "prod").Release)
		if out, errOut, code := e.slipway("release", "--app", "pyapp"); code != 0 {
			t.Fatalf("release %s: exit %d\n%s%s", commit[:7], code, out, errOut)
		}
		p := envOf(e.appStatus("pyapp"), "prod")
		if deref(p.Commit) != commit || deref(p.Digest) != digest {
			t.Errorf("prod after the release: %s %s, want %s with the CI's image %s", deref(p.Commit), deref(p.Digest), commit[:7], digest)
		}
		e.checkPython(e.prodURL, commit, greeting)
		e.checkImage("pyapp", commit, digest, deref(p.Release))
		step(commit[:7] + " released to prod as " + deref(p.Release))
		if out, errOut, code := e.slipway("rollback", "--app", "pyapp"); code != 0 {
			t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
		}
		p = envOf(e.appStatus("pyapp"), "prod")
		if deref(p.Commit) != wasCommit || deref(p.Digest) != wasDigest || deref(p.Release) != wasRelease {
			t.Errorf("prod after the rollback: %s %s %s, want %s %s %s", deref(p.Commit), deref(p.Digest), deref(p.Release), wasCommit, wasDigest, wasRelease)
		}
		if got := version(e.prodURL); got != wasCommit {
			t.Errorf("prod's /version after the rollback = %s, want %s", got, wasCommit)
		}
		step("prod rolled back to " + wasRelease)
	}

	// The watch: a push to master waits for its image; the CI's build of
	// it, pushed as sha-COMMIT, goes to dev.
	c1 := e.push("Say hi", func(dir string) {
		editFile(t, filepath.Join(dir, "app.py"), `GREETING = "Hello from pyapp"`, `GREETING = "Hi from pyapp"`)
	})
	e.waitFor("dev to wait for c1's image", func() bool { return envOf(e.appStatus("pyapp"), "dev").Rollout != nil })
	pushed := time.Now()
	d1 := ciBuildPython(t, e.ws.Bare, c1, base, watched+":sha-"+c1)
	e.waitFor("c1 on dev", func() bool { return version(e.devURL) == c1 })
	t.Logf("measured: CI's build and push of sha-%s → serving on dev (watch every 300ms): %s", c1[:7], time.Since(pushed).Round(time.Millisecond))
	e.waitFor("c1 verified on dev", verified("dev", c1))
	step("c1 (CI's image, by the watch) verified on dev")
	shipped(c1, d1, "Hi from pyapp")

	// The API: the next push's image, pushed elsewhere, announced with its
	// commit and digest; the token is required.
	c2 := e.push("Say hello again", func(dir string) {
		editFile(t, filepath.Join(dir, "app.py"), `GREETING = "Hi from pyapp"`, `GREETING = "Hello again from pyapp"`)
	})
	elsewhere := e.regAddr + "/other/pyapp"
	d2 := ciBuildPython(t, e.ws.Bare, c2, base, elsewhere+":build-2")
	post := func(token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.apiURL+"/api/v1/apps/pyapp/builds", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	announce := `{"image":"` + elsewhere + "@" + d2 + `","commit":"` + c2 + `"}`
	if code, body := post("", announce); code != http.StatusUnauthorized {
		t.Errorf("POST builds without the token: %d %s, want 401", code, body)
	}
	called := time.Now()
	if code, body := post(token, announce); code != http.StatusCreated || !strings.Contains(body, d2) {
		t.Fatalf("POST builds: %d %s, want 201 with %s", code, body, d2)
	}
	e.waitFor("c2 on dev", func() bool { return version(e.devURL) == c2 })
	t.Logf("measured: API call → %s serving on dev: %s", c2[:7], time.Since(called).Round(time.Millisecond))
	e.waitFor("c2 verified on dev", verified("dev", c2))
	step("c2 (CI's image, by the API) verified on dev")
	shipped(c2, d2, "Hello again from pyapp")

	// Refused, with the reason, by the API and by the watch: an image whose
	// revision is not a commit of the repository, and a second image for a
	// commit that has one (the CI's tag moved).
	devCommit, devDigest := dev()
	prodCommit, prodDigest := prod()
	stranger := strings.Repeat("5a", 20)
	files, cfg := ciPythonImage(t, e.ws.Bare, c2, base)
	cfg.Labels[build.LabelRevision] = stranger
	ciPush(t, base, files, cfg, elsewhere+":stranger")
	if code, body := post(token, `{"image":"`+elsewhere+`:stranger"}`); code != http.StatusConflict || !strings.Contains(body, "names commit "+stranger) {
		t.Errorf("POST builds of an image of no commit of the repository: %d %s, want 409 naming commit %s", code, body, stranger)
	}
	files, rebuilt := ciPythonImage(t, e.ws.Bare, c2, base)
	rebuilt.Env = append(rebuilt.Env, "REBUILT=1")
	if ciPush(t, base, files, rebuilt, elsewhere+":build-2") == d2 {
		t.Fatal("the rebuild of c2 has c2's digest; the test needs another image")
	}
	if code, body := post(token, `{"image":"`+elsewhere+`:build-2","commit":"`+c2+`"}`); code != http.StatusConflict || !strings.Contains(body, "never replaced (a tag that moved?)") {
		t.Errorf("POST builds of the moved tag build-2: %d %s, want 409 saying the image of a commit is never replaced", code, body)
	}
	// The same two pushed to the watched repository.
	ciPush(t, base, files, cfg, watched+":sha-"+stranger)
	ciPush(t, base, files, rebuilt, watched+":sha-"+c2)
	refusals := map[string]string{"sha-" + stranger: "names commit " + stranger, "sha-" + c2: "never replaced (a tag that moved?)"}
	for tag, why := range refusals {
		e.waitFor("the watch to log its refusal of "+tag, func() bool {
			b, err := os.ReadFile(e.logPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "image refused") && strings.Contains(line, tag) && strings.Contains(line, why) {
					t.Logf("serve: %s", line)
					return true
				}
			}
			return false
		})
	}
	// Nothing of them was deployed or tagged.
	time.Sleep(time.Second) // a few watch intervals and polls
	if c, d := dev(); c != devCommit || d != devDigest {
		t.Errorf("dev after the refusals: %s %s, want %s %s", c, d, devCommit, devDigest)
	}
	if c, d := prod(); c != prodCommit || d != prodDigest {
		t.Errorf("prod after the refusals: %s %s, want %s %s", c, d, prodCommit, prodDigest)
	}
	reg := registry.NewClient()
	if d, err := reg.Digest(ctx, e.regAddr+"/pyapp", "sha-"+stranger); err == nil {
		t.Errorf("pyapp:sha-%s exists (%s): a refused image was taken", stranger[:7], d)
	}
	if d, err := reg.Digest(ctx, e.regAddr+"/pyapp", "sha-"+c2); err != nil || d.String() != d2 {
		t.Errorf("pyapp:sha-%s on %v (%v), want the first image %s", c2[:7], d, err, d2)
	}
	step("refusals checked")

	for i, l := range loads {
		l.finish(t, []string{"dev", "prod"}[i]+": pushes, CI images by the watch and the API, releases, rollbacks, refusals")
	}
	if rc := deref(envOf(e.appStatus("pyapp"), "prod").Release); rc != rc0 {
		t.Errorf("prod's release at the end = %s, want %s", rc, rc0)
	}
	step("done")
}
