package local

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/deploytest"
)

func TestMain(m *testing.M) {
	SupervisorMain()
	if dir := os.Getenv("SLIPWAY_TEST_CONTROLLER"); dir != "" {
		os.Exit(runTestController(dir, os.Getenv("SLIPWAY_TEST_SPEC")))
	}
	os.Exit(m.Run())
}

// runTestController stands for slipway's controller in tests of restarts:
// it applies the spec recorded as JSON in specPath (as the controller
// deploys what its ledger says an environment runs), says so on stdout,
// and then runs until it is killed.
func runTestController(dir, specPath string) int {
	ctx := context.Background()
	raw, err := os.ReadFile(specPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var spec deploy.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := New(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := b.Apply(ctx, spec); err != nil {
		fmt.Fprintln(os.Stderr, "apply:", err)
		return 1
	}
	fmt.Println("applied")
	select {}
}

// shortTempDir is a temporary directory with a path short enough for unix
// sockets (t.TempDir's include the test's name).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "slw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// newTestBackend returns a Backend on a fresh directory whose environments
// are all stopped when the test ends.
func newTestBackend(t testing.TB, dir string) *Backend {
	t.Helper()
	return newTestBackendOpts(t, Options{Dir: dir})
}

// newTestBackendOpts is newTestBackend with options.
func newTestBackendOpts(t testing.TB, opts Options) *Backend {
	t.Helper()
	dir := opts.Dir
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		entries, _ := os.ReadDir(filepath.Join(dir, "envs"))
		for _, e := range entries {
			if err := b.Stop(ctx, e.Name()); err != nil && !errors.Is(err, deploy.ErrNotDeployed) {
				t.Errorf("stop %s: %v", e.Name(), err)
			}
			// A supervisor is this test binary too: what went wrong in it
			// (a data race under -race, a panic) is in its log.
			log, _ := os.ReadFile(filepath.Join(dir, "envs", e.Name(), "supervisor.log"))
			for _, bad := range []string{"WARNING: DATA RACE", "panic:"} {
				if i := strings.Index(string(log), bad); i >= 0 {
					t.Errorf("supervisor of %s: %s", e.Name(), log[i:min(len(log), i+4000)])
				}
			}
		}
	})
	return b
}

var (
	fixtureOnce sync.Once
	fixtureBin  []byte
	fixtureErr  error
)

// fixtureBinary builds testdata/fixture once per test run.
func fixtureBinary(t testing.TB) []byte {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fixture")
		if err != nil {
			fixtureErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "fixture")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/fixture")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			fixtureErr = fmt.Errorf("go build ./testdata/fixture: %v\n%s", err, b)
			return
		}
		fixtureBin, fixtureErr = os.ReadFile(out)
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureBin
}

// setOwnEnv sets the environment variable key, which only the calling test
// reads, until the test ends. Unlike t.Setenv it lets the test run in
// parallel: no other test reads or sets that variable.
func setOwnEnv(t *testing.T, key, value string) {
	t.Helper()
	if v, ok := os.LookupEnv(key); ok {
		t.Fatalf("%s is set already (%q): it must be this test's own", key, v)
	}
	if err := os.Setenv(key, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Unsetenv(key) })
}

// tarLayer makes an image layer from tar entries.
type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func tarLayer(t testing.TB, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg || h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testRegistry is an in-process registry on 127.0.0.1.
type testRegistry struct {
	host string
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &testRegistry{host: strings.TrimPrefix(srv.URL, "http://")}
}

// push pushes img as repo and returns its reference pinned to the digest.
func (r *testRegistry) push(t testing.TB, repo string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.host + "/" + repo + "@" + d.String()
}

// fixtureImage is the fixture server as an image, its /version answering
// commit.
func fixtureImage(t testing.TB, commit string, extra ...v1.Layer) v1.Image {
	t.Helper()
	layer := tarLayer(t,
		tarEntry{hdr: tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarEntry{hdr: tar.Header{Name: "app/fixture", Mode: 0o755}, body: fixtureBinary(t)},
		tarEntry{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarEntry{hdr: tar.Header{Name: "etc/hosts", Mode: 0o644}, body: []byte("127.0.0.1 localhost\n")},
	)
	img, err := mutate.AppendLayers(empty.Image, append([]v1.Layer{layer}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/app/fixture"}
	cf.Config.Env = []string{"PATH=/app", "FIXTURE_COMMIT=" + commit}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// fixtureReleases builds and pushes two versions of the fixture and a
// release of the second that never becomes ready.
func fixtureReleases(t testing.TB) (v1r, v2r, broken deploytest.Release) {
	t.Helper()
	reg := newTestRegistry(t)
	c1 := strings.Repeat("1a", 20)
	c2 := strings.Repeat("2b", 20)
	v1r = deploytest.Release{Image: reg.push(t, "fixture", fixtureImage(t, c1)), Commit: c1, Version: c1[:7]}
	v2r = deploytest.Release{Image: reg.push(t, "fixture", fixtureImage(t, c2)), Commit: c2, Version: c2[:7]}
	broken = deploytest.Release{Image: v2r.Image, Commit: c2, Version: "never-ready",
		Env: map[string]string{"FIXTURE_NEVER_READY": "1"}}
	return v1r, v2r, broken
}

// baseSpec is a spec of the fixture app with what slipway's configuration
// gives by default.
func baseSpec(env string) deploy.Spec {
	return deploy.Spec{
		Environment:   env,
		App:           "fixture",
		Env:           map[string]string{"DATABASE_URL": config.LocalDatabaseURL("fixture")},
		Port:          8080,
		ListenAddr:    "127.0.0.1:0",
		ReadinessPath: "/readyz",
		LivenessPath:  "/healthz",
		Strategy:      deploy.Strategy{TerminationGracePeriod: 5 * time.Second},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	v1r, v2r, broken := fixtureReleases(t)
	deploytest.Run(t, func(t testing.TB) deploy.Backend {
		return newTestBackend(t, shortTempDir(t))
	}, deploytest.Fixture{
		V1: v1r, V2: v2r, Broken: broken,
		Spec:        func(t testing.TB, env string) deploy.Spec { return baseSpec(env) },
		VersionPath: "/version",
		// Long enough for the never-ready replica to have started and
		// logged on a busy machine: the error must carry its lines.
		BrokenReadyTimeout: 10 * time.Second,
	})
}
