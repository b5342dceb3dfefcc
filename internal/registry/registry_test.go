package registry

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// startEmbedded serves an embedded registry on 127.0.0.1:0 and returns its
// address.
func startEmbedded(t *testing.T) string {
	t.Helper()
	e, err := NewEmbedded(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve(l) }()
	t.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			t.Errorf("close registry: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return l.Addr().String()
}

var fastRetry = WithBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 3})

func TestPushTagPull(t *testing.T) {
	ctx := context.Background()
	addr := startEmbedded(t)
	repo := addr + "/app"
	c := NewClient(fastRetry)

	if tags, err := c.Tags(ctx, repo); err != nil || len(tags) != 0 {
		t.Fatalf("Tags of an empty registry = %v, %v; want none", tags, err)
	}
	if _, err := c.Digest(ctx, repo, "latest"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Digest of a missing tag = %v, want ErrNotFound", err)
	}

	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	got, err := c.Push(ctx, repo, img, "abc1234", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Push = %s, want %s", got, want)
	}
	if err := c.Tag(ctx, repo, "live", got); err != nil {
		t.Fatal(err)
	}
	tags, err := c.Tags(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if diff := cmp.Diff([]string{"abc1234", "latest", "live"}, tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	for _, tag := range tags {
		d, err := c.Digest(ctx, repo, tag)
		if err != nil || d != want {
			t.Errorf("Digest(%s) = %s, %v; want %s", tag, d, err, want)
		}
	}
	pulled, err := c.Image(ctx, repo, want)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := pulled.Layers()
	if err != nil || len(ls) != 2 {
		t.Fatalf("pulled layers = %d, %v", len(ls), err)
	}
	rc, err := ls[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	if err := c.Tag(ctx, repo, "x", v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tag of a missing digest = %v, want ErrNotFound", err)
	}
}

// TestRetries puts a proxy in front of the registry that fails the first
// requests (dropped connections, 503s): pushes succeed after retrying.
// A registry that keeps failing gives a clear error once retries run out.
func TestRetries(t *testing.T) {
	ctx := context.Background()
	addr := startEmbedded(t)
	target, _ := url.Parse("http://" + addr)
	proxy := httputil.NewSingleHostReverseProxy(target)

	var failures atomic.Int32
	mode := atomic.Value{}
	mode.Store("drop")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failures.Add(-1) >= 0 {
			switch mode.Load() {
			case "drop":
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			case "refuse":
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
	c := NewClient(fastRetry)

	for _, m := range []string{"drop", "refuse"} {
		mode.Store(m)
		failures.Store(2)
		img, _ := random.Image(512, 1)
		if _, err := c.Push(ctx, repo, img, "latest"); err != nil {
			t.Errorf("%s twice, then serve: push failed: %v", m, err)
		}
	}

	mode.Store("refuse")
	failures.Store(1 << 20)
	img, _ := random.Image(512, 1)
	_, err := c.Push(ctx, repo, img, "latest")
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("push to a registry that keeps refusing = %v, want an error naming the 503", err)
	}

	mode.Store("drop")
	_, err = c.Push(ctx, repo, img, "latest")
	if err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("push to a registry that keeps dropping = %v, want an error naming the EOF", err)
	}
}

func TestListenBusyAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, _, err = Listen(context.Background(), l.Addr().String(), t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "--registry-addr") {
		t.Errorf("Listen on a busy address = %v, want an error suggesting --registry-addr", err)
	}
}
