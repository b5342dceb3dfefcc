package build

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

const appName = "birthday-app"

// git runs git in dir with a fixed identity and date, so commits (and so
// images) are the same on every run.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Slipway Test", "GIT_AUTHOR_EMAIL=test@slipway.dev",
		"GIT_COMMITTER_NAME=Slipway Test", "GIT_COMMITTER_EMAIL=test@slipway.dev",
		"GIT_AUTHOR_DATE=2026-03-01T12:00:00Z", "GIT_COMMITTER_DATE=2026-03-01T12:00:00Z")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// appRepo copies the sample birthday-app into a new git repository with
// one commit on master, and returns the repository and the commit.
func appRepo(t *testing.T) (string, string) {
	t.Helper()
	testenv.LookPath(t, "git")
	src, err := filepath.Abs("../../examples/birthday-app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "main.go")); err != nil {
		testenv.Missing(t, "the sample app examples/birthday-app")
	}
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q", "-b", "master")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "birthday-app")
	return dir, git(t, dir, "rev-parse", "HEAD")
}

// commitFile adds a file to the repository in a new commit on master.
func commitFile(t *testing.T, repo, name, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "add", name)
	git(t, repo, "commit", "-q", "-m", "add "+name)
	return git(t, repo, "rev-parse", "HEAD")
}

// startRegistry serves an embedded registry on 127.0.0.1:0.
func startRegistry(t *testing.T) string {
	t.Helper()
	reg, err := registry.NewEmbedded(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go reg.Serve(l)
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
func newEnv(t *testing.T, repoURL, regAddr, testCmd string) *env {
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

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestBuildBirthdayApp is the whole build of the sample app with its own
// tests: the image is pushed and tagged, carries the labels, and its
// binary reports the commit; a second build of the commit does no work.
func TestBuildBirthdayApp(t *testing.T) {
	ctx := context.Background()
	repo, commit := appRepo(t)
	e := newEnv(t, repo, startRegistry(t), "go test ./...")

	res, err := e.b.Run(ctx, Request{Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Build.Commit != commit || res.Build.State != ledger.BuildPushed {
		t.Fatalf("result = %+v, want commit %s pushed", res, commit)
	}
	if got, want := res.Reference(), e.repo+"@"+res.Digest.String(); got != want {
		t.Errorf("Reference = %q, want %q", got, want)
	}

	// Every tag is on the pushed digest.
	tags, err := e.client.Tags(ctx, e.repo)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if diff := cmp.Diff([]string{commit[:7], "latest", "sha-" + commit}, tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	for _, tag := range tags {
		if d, err := e.client.Digest(ctx, e.repo, tag); err != nil || d != res.Digest {
			t.Errorf("tag %s is on %s (%v), want %s", tag, d, err, res.Digest)
		}
	}

	// The image's config.
	img, err := e.client.Image(ctx, e.repo, res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := v1.Config{
		Entrypoint:   []string{"/app/birthday-app"},
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PORT=8080", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "HOME=/home/nonroot"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		User:         "65532:65532",
		WorkingDir:   "/home/nonroot",
		Labels: map[string]string{
			LabelRevision: commit,
			LabelSource:   repo,
			LabelCreated:  "2026-03-01T12:00:00Z",
			LabelTitle:    appName,
			LabelVersion:  commit[:7],
		},
	}
	if diff := cmp.Diff(wantCfg, cf.Config); diff != "" {
		t.Errorf("image config (-want +got):\n%s", diff)
	}
	if cf.OS != "linux" || !cf.Created.Time.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("os %q created %v, want linux and the commit time", cf.OS, cf.Created)
	}
	mt, _ := img.MediaType()
	if mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type = %s, want OCI", mt)
	}

	// The files of the image: the base and the binary.
	files := imageFiles(t, img)
	for _, f := range []string{"etc/passwd", "etc/group", "tmp/", "home/nonroot/", "app/birthday-app"} {
		if _, ok := files[f]; !ok {
			t.Errorf("image has no %s", f)
		}
	}
	if !strings.Contains(string(files["etc/passwd"].body), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd = %q, want the nonroot user", files["etc/passwd"].body)
	}
	if files["tmp/"].mode&0o1777 != 0o1777 {
		t.Errorf("/tmp mode = %o, want 1777", files["tmp/"].mode)
	}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		if _, ok := files["etc/ssl/certs/ca-certificates.crt"]; !ok {
			t.Errorf("image has no CA certificates")
		}
	}

	// The binary runs and knows its commit.
	bin := filepath.Join(t.TempDir(), appName)
	if err := os.WriteFile(bin, files["app/birthday-app"].body, 0o755); err != nil {
		t.Fatal(err)
	}
	version := runAndGetVersion(t, bin)
	if version.Commit != commit || version.Modified {
		t.Errorf("/version = %+v, want commit %s, not modified", version, commit)
	}

	// The ledger row and the log.
	row, err := e.store.LatestBuild(ctx, commit)
	if err != nil {
		t.Fatal(err)
	}
	if row.State != ledger.BuildPushed || row.Digest != res.Digest.String() || row.TestDuration <= 0 || row.BuildDuration <= 0 || row.Trigger != "test" {
		t.Errorf("ledger row = %+v", row)
	}
	log, err := os.ReadFile(row.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"$ go test ./...", "ok  \texample.com/birthday-app/internal/birthday", "# tests passed", "go build -trimpath -buildvcs=true"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("build log lacks %q:\n%s", want, log)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(e.dataDir, "work")); len(entries) != 2 {
		t.Errorf("work directory holds %v, want only the app's checkout and its lock", entries)
	}

	// A second build of the commit does no work.
	again, err := e.b.Run(ctx, Request{Rev: commit[:10], Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Skipped || again.Digest != res.Digest || again.Build.LogPath != "" || again.Build.TestDuration != 0 {
		t.Errorf("second build = %+v, want skipped with the same digest and no log", again)
	}
	events, err := e.store.Events(ctx, ledger.EventFilter{Commit: commit})
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, ev := range events {
		outcomes = append(outcomes, ev.Outcome)
	}
	if diff := cmp.Diff([]string{ledger.OutcomeSkipped, ledger.OutcomeSucceeded}, outcomes); diff != "" {
		t.Errorf("build events (-want +got):\n%s", diff)
	}
}

type fileEntry struct {
	mode int64
	body []byte
}

// imageFiles reads every file of the image's layers.
func imageFiles(t *testing.T, img v1.Image) map[string]fileEntry {
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

type versionInfo struct {
	Commit   string `json:"commit"`
	Modified bool   `json:"modified"`
}

// runAndGetVersion starts the app binary on a free port and asks it for
// /version.
func runAndGetVersion(t *testing.T, bin string) versionInfo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "HOST=127.0.0.1", "PORT=0", "DATABASE_URL=sqlite:"+filepath.Join(t.TempDir(), "app.db"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
	}()
	addrRe := regexp.MustCompile(`"addr":"([^"]+)"`)
	sc := bufio.NewScanner(stderr)
	var addr string
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		t.Fatalf("the built binary never said where it listens:\n%s", strings.Join(seen, "\n"))
	}
	go io.Copy(io.Discard, stderr)
	resp, err := http.Get("http://" + addr + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v versionInfo
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReproducible builds one commit from two data directories (two
// mirrors, two checkouts) into two registries: same digest.
func TestReproducible(t *testing.T) {
	ctx := context.Background()
	repo, _ := appRepo(t)
	var digests []v1.Hash
	for range 2 {
		e := newEnv(t, repo, startRegistry(t), "true")
		res, err := e.b.Run(ctx, Request{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Skipped {
			t.Fatal("build skipped in a fresh registry")
		}
		digests = append(digests, res.Digest)
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of one commit: %s and %s, want the same digest", digests[0], digests[1])
	}
}

// TestFailures checks that each failure leaves no image and a failed
// ledger row whose reason says what happened.
func TestFailures(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, repo string) string // returns the rev to build
		testCmd string
		timeout time.Duration
		wantErr error
		reason  []string // in the ledger row's reason
		inLog   string
	}{
		{
			name: "failing test",
			change: func(t *testing.T, repo string) string {
				return commitFile(t, repo, "zz_fail_test.go", "package main\n\nimport \"testing\"\n\nfunc TestDeliberatelyBroken(t *testing.T) { t.Fatal(\"this commit breaks the tests\") }\n")
			},
			testCmd: "go test ./...",
			wantErr: ErrTestsFailed,
			reason:  []string{"tests failed (exit status 1)", "this commit breaks the tests"},
			inLog:   "--- FAIL: TestDeliberatelyBroken",
		},
		{
			name: "compile error",
			change: func(t *testing.T, repo string) string {
				return commitFile(t, repo, "zz_broken.go", "package main\n\nvar _ = notDefinedAnywhere\n")
			},
			testCmd: "true",
			wantErr: ErrCompile,
			reason:  []string{"go build failed (exit status 1)", "undefined: notDefinedAnywhere"},
			inLog:   "undefined: notDefinedAnywhere",
		},
		{
			name:    "hanging test",
			change:  func(t *testing.T, repo string) string { return "master" },
			testCmd: "echo started; sleep 600",
			timeout: 500 * time.Millisecond,
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
	}
	repo, _ := appRepo(t)
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
	repo, _ := appRepo(t)
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
			var requests int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests++; h(w, r) }))
			defer srv.Close()
			e := newEnv(t, repo, strings.TrimPrefix(srv.URL, "http://"), "true")
			res, err := e.b.Run(context.Background(), Request{})
			if !errors.Is(err, ErrPush) {
				t.Fatalf("Run = %v, want ErrPush", err)
			}
			if requests < 2 {
				t.Errorf("%d requests, want retries", requests)
			}
			if res.Build.State != ledger.BuildFailed || !strings.Contains(res.Build.Reason, "push failed") {
				t.Errorf("row = %+v", res.Build)
			}
			t.Logf("reason: %s", res.Build.Reason)
		})
	}
}

// TestPushRefused builds against a registry that answers reads but refuses
// every upload: the build fails after retries with the reason, and the
// registry holds no tag of the commit.
func TestPushRefused(t *testing.T) {
	ctx := context.Background()
	repo, commit := appRepo(t)
	realAddr := startRegistry(t)
	target, _ := url.Parse("http://" + realAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refused int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			proxy.ServeHTTP(w, r)
			return
		}
		refused++
		http.Error(w, "quota exceeded", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	e := newEnv(t, repo, strings.TrimPrefix(srv.URL, "http://"), "true")
	res, err := e.b.Run(ctx, Request{})
	if !errors.Is(err, ErrPush) {
		t.Fatalf("Run = %v, want ErrPush", err)
	}
	if refused < 2 {
		t.Errorf("%d uploads refused, want retries", refused)
	}
	for _, want := range []string{"push failed", "gave up after 3 attempts", "quota exceeded"} {
		if !strings.Contains(res.Build.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, res.Build.Reason)
		}
	}
	tags, err := registry.NewClient().Tags(ctx, realAddr+"/"+appName)
	if err != nil || len(tags) != 0 {
		t.Errorf("tags after a refused push = %v, %v; want none", tags, err)
	}
	if res.Build.State != ledger.BuildFailed || res.Build.Commit != commit {
		t.Errorf("row = %+v", res.Build)
	}
}
