//go:build integration

package build

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// These tests compile and test the sample app for real (several seconds
// each): they run with -tags integration (scripts/test).

// TestBuildBirthdayApp is the whole build of the sample app with its own
// tests: the image is pushed and tagged, carries the labels, and its
// binary reports the commit; a second build of the commit does no work.
func TestBuildBirthdayApp(t *testing.T) {
	ctx := context.Background()
	repo, commit := testenv.SampleAppRepo(t)
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
	for _, want := range []string{"# fetching modules: go mod download", "# modules fetched in ", "# testing: go test ./...", "$ go test ./...",
		"ok  \texample.com/birthday-app/internal/birthday", "# tests passed in ", "# building: .", "go build -trimpath -buildvcs=true",
		"# compiled in ", "# image made in ", "# pushed " + res.Reference() + " in "} {
		if !strings.Contains(string(log), want) {
			t.Errorf("build log lacks %q:\n%s", want, log)
		}
	}
	// The work directory keeps the app's checkout, its lock and procs, the
	// records of running commands, which are gone once the build is done.
	var kept []string
	entries, _ := os.ReadDir(filepath.Join(e.dataDir, "work"))
	for _, en := range entries {
		if en.Name() != "procs" {
			kept = append(kept, en.Name())
		}
	}
	if len(kept) != 2 {
		t.Errorf("work directory holds %v, want only the app's checkout and its lock", entries)
	}
	if procs, _ := os.ReadDir(filepath.Join(e.dataDir, "work", "procs")); len(procs) != 0 {
		t.Errorf("records of commands left after the build: %v", procs)
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
	repo, _ := testenv.SampleAppRepo(t)
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
	tests := []failureCase{
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
	}
	runFailures(t, tests)
}

// TestPushRefused builds against a registry that answers reads but refuses
// every upload: the build fails after retries with the reason, and the
// registry holds no tag of the commit.
func TestPushRefused(t *testing.T) {
	ctx := context.Background()
	repo, commit := testenv.SampleAppRepo(t)
	realAddr := startRegistry(t)
	target, _ := url.Parse("http://" + realAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			proxy.ServeHTTP(w, r)
			return
		}
		refused.Add(1)
		http.Error(w, "quota exceeded", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	e := newEnv(t, repo, strings.TrimPrefix(srv.URL, "http://"), "true")
	res, err := e.b.Run(ctx, Request{})
	if !errors.Is(err, ErrPush) {
		t.Fatalf("Run = %v, want ErrPush", err)
	}
	if n := refused.Load(); n < 2 {
		t.Errorf("%d uploads refused, want retries", n)
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
