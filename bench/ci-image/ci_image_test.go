//go:build bench

// Package ciimage measures how long an image built by a team's CI takes to
// serve on dev once the API is told about it: each round pushes a commit
// of the sample service, builds its image the way a CI would (go build in
// a checkout of its own, the image assembled with go-containerregistry,
// pushed to another repository of the registry), waits until slipway's
// build of the commit is waiting for it, then times POST
// /api/v1/apps/birthday-app/builds until dev's /version answers the
// commit: the image's checks, its copy to REGISTRY/APP:sha-COMMIT, the pull
// and unpacking by the local runtime, and the rolling update of dev's 2
// replicas with their health checks.
//
//	go test -tags bench -run '^$' -bench . -benchtime 10x ./bench/ci-image
package ciimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/testenv"
)

// rig is slipway serving the sample service, its images from CI, with its
// first commit on dev and prod; it is made once for every run of the
// benchmark (Go runs it with b.N = 1 first) and stopped by TestMain.
type rig struct {
	ws             demo.Workspace
	dir            string
	serve          *exec.Cmd
	apiURL, devURL string
	token          string
	client         *api.Client
	ci             string // CI's repository
}

var shared *rig

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.close()
	}
	os.Exit(code)
}

func (r *rig) close() {
	r.serve.Process.Signal(syscall.SIGTERM)
	r.serve.Wait()
	lb, err := local.New(local.Options{Dir: filepath.Join(r.ws.DataDir, "run", demo.AppName), App: demo.AppName, LegacyDir: filepath.Join(r.ws.DataDir, "run")})
	if err == nil {
		for _, env := range []string{"dev", "prod"} {
			lb.Stop(context.Background(), env)
		}
	}
	os.RemoveAll(r.dir)
}

func setup(b *testing.B) *rig {
	if shared != nil {
		return shared
	}
	testenv.LookPath(b, "git")
	testenv.LookPath(b, "go")
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "swci")
	if err != nil {
		b.Fatal(err)
	}
	devAddr, prodAddr, apiAddr, regAddr := testenv.FreeAddr(b), testenv.FreeAddr(b), testenv.FreeAddr(b), testenv.FreeAddr(b)
	ws, err := demo.Prepare(ctx, demo.Options{Dir: filepath.Join(dir, "demo"), DevAddr: devAddr, ProdAddr: prodAddr})
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(ws.Config)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Build.Kind = config.BuildImage
	cfg.Build.Image = config.ImageSource{Wait: 10 * time.Minute}
	var buf bytes.Buffer
	if err := config.Write(&buf, cfg); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(ws.Config, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "slipway")
	if out, err := exec.Command("go", "build", "-o", bin, "slipway.dev/slipway/cmd/slipway").CombinedOutput(); err != nil {
		b.Fatalf("build slipway: %v\n%s", err, out)
	}
	r := &rig{ws: ws, dir: dir, apiURL: "http://" + apiAddr, devURL: "http://" + devAddr, ci: regAddr + "/ci/" + demo.AppName}
	r.serve = exec.Command(bin, "serve", "--config", ws.Config, "--data-dir", ws.DataDir, "--api-addr", apiAddr, "--registry-addr", regAddr)
	log, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		b.Fatal(err)
	}
	r.serve.Stdout, r.serve.Stderr = log, log
	if err := r.serve.Start(); err != nil {
		b.Fatal(err)
	}
	shared = r
	waitFor(b, "the API", func() bool {
		_, err := api.NewClient(r.apiURL, "").Status(ctx, "")
		return err == nil
	})
	tok, err := os.ReadFile(filepath.Join(ws.DataDir, api.TokenFile))
	if err != nil {
		b.Fatal(err)
	}
	r.token = strings.TrimSpace(string(tok))
	r.client = api.NewClient(r.apiURL, r.token)

	// The first commit, on dev and prod, before the rounds.
	c0 := git(b, ws.Bare, "rev-parse", "master")
	r.post(b, ciBuild(b, ws.Bare, c0, r.ci+":sha-"+c0), c0)
	waitFor(b, "c0 on prod", func() bool {
		p := envOf(r.status(b), "prod")
		return p.Commit != nil && *p.Commit == c0 && p.Healthy && p.Rollout == nil
	})
	return r
}

func (r *rig) status(b *testing.B) pipeline.Status {
	st, err := r.client.Status(context.Background(), demo.AppName)
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// post announces CI's image of commit through the API.
func (r *rig) post(b *testing.B, image, commit string) {
	body := fmt.Sprintf(`{"image":%q,"commit":%q}`, image, commit)
	req, _ := http.NewRequest(http.MethodPost, r.apiURL+"/api/v1/apps/"+demo.AppName+"/builds", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("POST builds of %s: %s", commit[:7], resp.Status)
	}
}

func BenchmarkImageFromCIToDev(b *testing.B) {
	r := setup(b)
	var took, imported []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		os.WriteFile(filepath.Join(r.ws.Clone, "CHANGES"), fmt.Appendf(nil, "round %d of %d\n", i, b.N), 0o644)
		git(b, r.ws.Clone, "add", "--all")
		git(b, r.ws.Clone, "commit", "-q", "-m", fmt.Sprintf("Round %d of %d", i, b.N))
		git(b, r.ws.Clone, "push", "-q", "origin", "HEAD:master")
		c := git(b, r.ws.Clone, "rev-parse", "HEAD")
		image := ciBuild(b, r.ws.Bare, c, r.ci+":sha-"+c)
		waitFor(b, "the build of "+c[:7]+" to wait for its image", func() bool {
			d := envOf(r.status(b), "dev").Rollout
			return d != nil && d.Commit == c
		})
		b.StartTimer()
		called := time.Now()
		r.post(b, image, c)
		imported = append(imported, time.Since(called))
		for version(r.devURL) != c {
			if time.Since(called) > 2*time.Minute {
				b.Fatalf("%s not serving on dev 2 minutes after the API call", c[:7])
			}
			time.Sleep(5 * time.Millisecond)
		}
		took = append(took, time.Since(called))
		b.StopTimer()
		waitFor(b, c[:7]+" verified on dev", func() bool {
			d := envOf(r.status(b), "dev")
			return d.Commit != nil && *d.Commit == c && d.Rollout == nil
		})
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	b.ReportMetric(float64(sorted[len(sorted)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(sorted[0].Milliseconds()), "min-ms")
	b.ReportMetric(float64(sorted[len(sorted)-1].Milliseconds()), "max-ms")
	b.Logf("API call → new commit serving on dev, %d rounds: %v", len(took), round(took))
	b.Logf("of which the API call itself (checks, copy to sha-COMMIT): %v", round(imported))
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average: %s", strings.TrimSpace(string(load)))
	}
}

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// ciBuild builds the sample service at commit as a team's CI might and
// pushes it to ref; it returns ref.
func ciBuild(b *testing.B, bare, commit, ref string) string {
	b.Helper()
	work, err := os.MkdirTemp("", "swci-build")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	git(b, work, "clone", "-q", bare, src)
	git(b, src, "checkout", "-q", commit)
	bin := filepath.Join(work, "app")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=true", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("CI's go build: %v\n%s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		b.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "srv/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
	tw.WriteHeader(&tar.Header{Name: "srv/birthday-app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(binary))})
	tw.Write(binary)
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	if err != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		b.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{
		Entrypoint: []string{"/srv/birthday-app"},
		User:       "65534:65534",
		WorkingDir: "/tmp",
		Labels:     map[string]string{build.LabelRevision: commit},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		b.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		b.Fatalf("CI's push of %s: %v", ref, err)
	}
	return ref
}

func git(b *testing.B, dir string, args ...string) string {
	b.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=CI", "GIT_AUTHOR_EMAIL=ci@example.com", "GIT_COMMITTER_NAME=CI", "GIT_COMMITTER_EMAIL=ci@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	end := time.Now().Add(10 * time.Minute)
	for !cond() {
		if time.Now().After(end) {
			b.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
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
