//go:build integration

package build

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// TestRegistryFailsMidPush builds against a registry that takes the first
// uploads of a push and then answers 500 to every write: the build fails
// naming the registry's answer, leaves no sha- tag (so the commit counts
// as not built), and once the registry is well again the next build of the
// same commit pushes the same image with all its tags.
func TestRegistryFailsMidPush(t *testing.T) {
	ctx := context.Background()
	repo, commit := testenv.SampleAppRepo(t)
	realAddr := startRegistry(t)
	target, _ := url.Parse("http://" + realAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var writes, failed atomic.Int32
	var broken atomic.Bool
	broken.Store(true)
	const let = 3 // writes that get through before the registry breaks
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && broken.Load() && writes.Add(1) > let {
			failed.Add(1)
			http.Error(w, "storage backend failed", http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	e := newEnv(t, repo, addr, "true")

	res, err := e.b.Run(ctx, Request{})
	if !errors.Is(err, ErrPush) {
		t.Fatalf("Run = %v, want ErrPush", err)
	}
	if n := writes.Load(); n <= let {
		t.Fatalf("%d writes reached the registry; the fault did not happen mid-push", n)
	}
	if n := failed.Load(); n < 2 {
		t.Errorf("%d writes answered 500, want retries", n)
	}
	for _, want := range []string{"push failed", "500", "storage backend failed"} {
		if !strings.Contains(res.Build.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, res.Build.Reason)
		}
	}
	if res.Build.State != ledger.BuildFailed {
		t.Errorf("row = %+v, want failed", res.Build)
	}
	if _, err := e.client.Digest(ctx, realAddr+"/"+appName, "sha-"+commit); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("sha- tag after a push that failed half-way: %v, want not found", err)
	}
	t.Logf("reason: %s", res.Build.Reason)

	// The registry recovers: the same commit builds and pushes, all tags on
	// one digest.
	broken.Store(false)
	res, err = e.b.Run(ctx, Request{})
	if err != nil {
		t.Fatalf("build after the registry recovered: %v", err)
	}
	if res.Skipped || res.Build.State != ledger.BuildPushed || res.Build.Commit != commit {
		t.Fatalf("result = %+v, want the commit built and pushed", res)
	}
	for _, tag := range []string{"sha-" + commit, commit[:7], "latest"} {
		if d, err := e.client.Digest(ctx, realAddr+"/"+appName, tag); err != nil || d != res.Digest {
			t.Errorf("tag %s is on %s (%v), want %s", tag, d, err, res.Digest)
		}
	}
}

// TestRegistryUnreachable builds with nothing listening at the registry's
// address: the build fails at once naming the address and the refused
// connection, and builds once a registry answers there.
func TestRegistryUnreachable(t *testing.T) {
	ctx := context.Background()
	repo, commit := testenv.SampleAppRepo(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e := newEnv(t, repo, addr, "true")
	res, err := e.b.Run(ctx, Request{})
	if !errors.Is(err, ErrPush) {
		t.Fatalf("Run = %v, want ErrPush", err)
	}
	for _, want := range []string{"push failed", addr, "connection refused"} {
		if !strings.Contains(res.Build.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, res.Build.Reason)
		}
	}
	if res.Build.State != ledger.BuildFailed {
		t.Errorf("row = %+v", res.Build)
	}
	t.Logf("reason: %s", res.Build.Reason)

	// A registry comes up at that address: the next build pushes.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s again (taken meanwhile by another process?): %v", addr, err)
	}
	reg, err := registry.NewEmbedded(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: reg}
	go srv.Serve(l)
	defer srv.Close()
	res, err = e.b.Run(ctx, Request{})
	if err != nil || res.Build.State != ledger.BuildPushed || res.Build.Commit != commit {
		t.Fatalf("build once the registry answers: %+v, %v", res.Build, err)
	}
}

// TestBuildOnFullDisk builds with slipway's data directory (ledger, git mirror,
// build work and logs) on a file system that is full: the build fails
// saying the disk is full, and the same commit builds once space is freed.
func TestBuildOnFullDisk(t *testing.T) {
	ctx := context.Background()
	repo, commit := testenv.SampleAppRepo(t)
	regAddr := startRegistry(t)
	dataDir := t.TempDir()
	testenv.SmallDisk(t, dataDir, "256m")
	store, err := ledger.Open(ctx, filepath.Join(dataDir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := config.Default()
	cfg.App, cfg.Repo.URL, cfg.Test.Command = appName, repo, "true"
	client := registry.NewClient(fastRetry)
	src := gitsource.New(repo, filepath.Join(dataDir, gitsource.MirrorDir))
	b := New(cfg, src, client, regAddr+"/"+appName, store, dataDir)
	b.Progress = testWriter{t}

	free := testenv.FillDisk(t, dataDir)
	res, err := b.Run(ctx, Request{})
	if err == nil {
		t.Fatalf("build on a full disk succeeded: %+v", res.Build)
	}
	if !strings.Contains(err.Error(), "no space left on device") && !errors.Is(err, ledger.ErrDiskFull) {
		t.Errorf("build on a full disk = %v, want it to say the disk is full", err)
	}
	t.Logf("build on a full disk: %v", err)
	if res.Build.ID != 0 {
		row, err := store.GetBuild(ctx, res.Build.ID)
		t.Logf("its ledger row: %+v (%v)", row, err)
	}

	free()
	res, err = b.Run(ctx, Request{})
	if err != nil || res.Build.State != ledger.BuildPushed || res.Build.Commit != commit {
		t.Fatalf("build once space is freed = %+v, %v; want the commit pushed", res.Build, err)
	}
}
