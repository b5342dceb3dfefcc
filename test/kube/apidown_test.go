//go:build integration

package kube

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/kube"
)

// apiProxy forwards TCP connections to the API server until it is cut: then
// it drops every open connection and each new one at once, as an API
// server that is down does; restore lets connections through again.
type apiProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func startAPIProxy(t *testing.T, target string) *apiProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { l.Close(); p.cutAll() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *apiProxy) serve(c net.Conn) {
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cutAll cuts the API server off.
func (p *apiProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *apiProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// syncBuffer is a log both the backend and the test use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAPIServerDownMidRollout cuts slipway off the API server for a minute
// while a rollout waits for its pods: the rollout waits, saying in its
// progress and in the log that the API server is unreachable; status fails
// naming the server; and once the server answers again the rollout
// completes, on the new version.
func TestAPIServerDownMidRollout(t *testing.T) {
	const outage = time.Minute
	app := testApp(t)
	cfg := testConfig(app)
	newBackend(t, cfg) // removes the app's namespaces at the end
	rc, err := kube.RESTConfig(cfg.Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(strings.TrimPrefix(rc.Host, "https://"), "http://")
	proxy := startAPIProxy(t, host)
	rc.Host = "https://" + proxy.l.Addr().String()
	var logs syncBuffer
	b, err := kube.New(rc, kube.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), fakeRelease("v1"), 2)); err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		progress []string
		once     sync.Once
	)
	pctx := deploy.WithProgress(ctx, func(msg string) {
		mu.Lock()
		progress = append(progress, msg)
		mu.Unlock()
		once.Do(proxy.cutAll) // the first report: applied, now waiting for the pods
	})
	v2 := fakeRelease("v2")
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- b.Apply(pctx, withRelease(baseSpec(app, "dev"), v2, 2)) }()

	time.Sleep(outage)
	select {
	case err := <-done:
		t.Fatalf("the rollout ended while the API server was unreachable: %v", err)
	default:
	}
	_, serr := b.Status(ctx, "dev")
	if serr == nil || !strings.Contains(serr.Error(), proxy.l.Addr().String()) {
		t.Errorf("status while the API server is unreachable = %v, want an error naming the server", serr)
	}
	t.Logf("status while unreachable: %v", serr)
	mu.Lock()
	said := strings.Join(progress, "\n")
	mu.Unlock()
	if !strings.Contains(said, "unreachable, waiting for it") {
		t.Errorf("the rollout's progress does not say the API server is unreachable:\n%s", said)
	}

	proxy.restore()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the rollout after the API server came back: %v", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the rollout did not complete within 3 minutes of the API server's return; progress:\n%s", strings.Join(progress, "\n"))
	}
	t.Logf("rollout completed %s after it started (API server cut off for %s)", time.Since(start).Round(time.Second), outage)
	st, err := b.Status(ctx, "dev")
	if err != nil || st.Commit != v2.Commit || st.Replicas.Ready != 2 {
		t.Errorf("status after the rollout = %+v, %v; want v2 with 2 ready replicas", st, err)
	}
	for _, want := range []string{"Kubernetes API server unreachable; waiting for it", "Kubernetes API server answers again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
