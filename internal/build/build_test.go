package build

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

const appName = "birthday-app"

// commitFile adds a file to the repository in a new commit on master.
func commitFile(t testing.TB, repo, name, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "add", name)
	testenv.Git(t, repo, "commit", "-q", "-m", "add "+name)
	return testenv.Git(t, repo, "rev-parse", "HEAD")
}

// startRegistry serves an embedded registry on 127.0.0.1:0.
func startRegistry(t testing.TB) string {
	t.Helper()
	reg, l, err := registry.Listen(context.Background(), "127.0.0.1:0", t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	return l.Addr().String()
}

var fastRetry = registry.WithBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 3})

type env struct {
	b       *Builder
	store   *ledger.Store
	client  *registry.Client
	repo    string // image repository
	dataDir string
}

// newEnv wires a Builder for the app repository at repoURL and the
// registry at regAddr, with the given test command, in a new data dir.
func newEnv(t testing.TB, repoURL, regAddr, testCmd string) *env {
	t.Helper()
	dataDir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dataDir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := config.Default()
	cfg.App = appName
	cfg.Repo.URL = repoURL
	cfg.Test.Command = testCmd
	cfg.Test.Timeout = 5 * time.Minute
	client := registry.NewClient(fastRetry)
	imageRepo := regAddr + "/" + appName
	src := gitsource.New(repoURL, filepath.Join(dataDir, gitsource.MirrorDir))
	b := New(cfg, src, client, imageRepo, store, dataDir)
	b.Progress = testWriter{t}
	return &env{b: b, store: store, client: client, repo: imageRepo, dataDir: dataDir}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// failureCase is a build that must fail.
type failureCase struct {
	name    string
	change  func(t *testing.T, repo string) string // returns the rev to build
	testCmd string
	timeout time.Duration
	wantErr error
	reason  []string // in the ledger row's reason
	noTail  string   // not in the reason
	inLog   string
}

// runFailures builds each case from one copy of the sample app and checks
// that it leaves no image and a failed ledger row whose reason says what
// happened.
func runFailures(t *testing.T, tests []failureCase) {
	repo, _ := testenv.SampleAppRepo(t)
	regAddr := startRegistry(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			rev := tt.change(t, repo)
			e := newEnv(t, repo, regAddr, tt.testCmd)
			if tt.timeout > 0 {
				e.b.Test.Timeout = tt.timeout
			}
			res, err := e.b.Run(ctx, Request{Rev: rev})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run = %v, want %v", err, tt.wantErr)
			}
			row, gerr := e.store.GetBuild(ctx, res.Build.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if row.State != ledger.BuildFailed || row.Digest != "" {
				t.Errorf("ledger row = %+v, want failed without digest", row)
			}
			if tt.noTail != "" && strings.Contains(row.Reason, tt.noTail) {
				t.Errorf("reason has %q:\n%s", tt.noTail, row.Reason)
			}
			for _, want := range tt.reason {
				if !strings.Contains(row.Reason, want) {
					t.Errorf("reason lacks %q:\n%s", want, row.Reason)
				}
			}
			if tt.inLog != "" {
				log, err := os.ReadFile(row.LogPath)
				if err != nil || !strings.Contains(string(log), tt.inLog) {
					t.Errorf("log %s lacks %q (%v)", row.LogPath, tt.inLog, err)
				}
			}
			if row.Commit != rev && len(rev) == 40 {
				t.Errorf("row commit = %s, want %s", row.Commit, rev)
			}
			if len(rev) == 40 {
				if _, err := e.client.Digest(ctx, e.repo, "sha-"+rev); !errors.Is(err, registry.ErrNotFound) {
					t.Errorf("sha tag of a failed build: %v, want not found", err)
				}
			}
		})
	}
	tags, err := registry.NewClient().Tags(context.Background(), regAddr+"/"+appName)
	if err != nil || len(tags) != 0 {
		t.Errorf("tags after failed builds = %v, %v; want none", tags, err)
	}
}

// TestQuickFailures checks the failures that stop before anything is
// compiled: a test command that hangs, and an unknown commit.
func TestQuickFailures(t *testing.T) {
	runFailures(t, []failureCase{
		{
			name:    "hanging test",
			change:  func(t *testing.T, repo string) string { return "master" },
			testCmd: "echo started; sleep 600",
			timeout: 500 * time.Millisecond,
			noTail:  "failed after",
			wantErr: ErrTimeout,
			reason:  []string{"tests did not finish within 500ms and was stopped (raise test.timeout if needed)", "started"},
			inLog:   "started",
		},
		{
			name:    "unknown commit",
			change:  func(t *testing.T, repo string) string { return "no-such-branch" },
			testCmd: "true",
			wantErr: gitsource.ErrUnknownRevision,
			reason:  []string{`"no-such-branch" is not a branch, tag or commit of`},
		},
	})
}

type fileEntry struct {
	mode int64
	body []byte
}

// imageFiles reads every file of the image's layers.
func imageFiles(t testing.TB, img v1.Image) map[string]fileEntry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]fileEntry{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = fileEntry{mode: h.Mode, body: b}
		}
		rc.Close()
	}
	return files
}

func TestUnreachableRepository(t *testing.T) {
	testenv.LookPath(t, "git")
	e := newEnv(t, filepath.Join(t.TempDir(), "missing.git"), startRegistry(t), "true")
	res, err := e.b.Run(context.Background(), Request{})
	if !errors.Is(err, gitsource.ErrUnreachable) {
		t.Fatalf("Run = %v, want ErrUnreachable", err)
	}
	if res.Build.State != ledger.BuildFailed || !strings.Contains(res.Build.Reason, "repository unreachable") {
		t.Errorf("row = %+v", res.Build)
	}
}

// TestRegistryFaults builds against registries that refuse (503) or drop
// every connection: the build fails with the reason after retrying.
func TestRegistryFaults(t *testing.T) {
	repo, _ := testenv.SampleAppRepo(t)
	faults := map[string]http.HandlerFunc{
		"refuses": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "registry is read-only for maintenance", http.StatusServiceUnavailable)
		},
		"drops": func(w http.ResponseWriter, r *http.Request) {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		},
	}
	for name, h := range faults {
		t.Run(name, func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1); h(w, r) }))
			defer srv.Close()
			e := newEnv(t, repo, strings.TrimPrefix(srv.URL, "http://"), "true")
			res, err := e.b.Run(context.Background(), Request{})
			if !errors.Is(err, ErrPush) {
				t.Fatalf("Run = %v, want ErrPush", err)
			}
			if n := requests.Load(); n < 2 {
				t.Errorf("%d requests, want retries", n)
			}
			if res.Build.State != ledger.BuildFailed || !strings.Contains(res.Build.Reason, "push failed") {
				t.Errorf("row = %+v", res.Build)
			}
			t.Logf("reason: %s", res.Build.Reason)
		})
	}
}

func copyCount(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

// TestReconcile marks builds a crash interrupted as failed.
func TestReconcile(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), "127.0.0.1:1", "true")
	running, err := e.store.CreateBuild(ctx, ledger.Build{App: appName, Commit: strings.Repeat("a", 40), State: ledger.BuildTesting})
	if err != nil {
		t.Fatal(err)
	}
	done, err := e.store.CreateBuild(ctx, ledger.Build{App: appName, Commit: strings.Repeat("b", 40), State: ledger.BuildPushed, Digest: "sha256:x"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.b.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != running.ID {
		t.Fatalf("Reconcile = %+v, want the testing build only", got)
	}
	row, _ := e.store.GetBuild(ctx, running.ID)
	if row.State != ledger.BuildFailed || row.Reason != "interrupted: slipway stopped while the build was testing; build the commit again" {
		t.Errorf("interrupted row = %+v", row)
	}
	if row, _ := e.store.GetBuild(ctx, done.ID); row.State != ledger.BuildPushed {
		t.Errorf("finished build changed: %+v", row)
	}
}
