//go:build integration

package kube

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/kube"
)

// roundTripFunc is an http.RoundTripper of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAPIServerDownDuringApply cuts slipway off the API server at the
// first write of a rollout (the server-side apply of its manifests), for
// 45 s: the apply is not lost nor half done, it waits, its progress and the
// log saying that the API server is unreachable; the Deployment keeps
// running the previous version (read past the cut); status fails naming the
// server; once the server answers again the apply is sent again and the
// rollout completes on the new version, with no other call.
func TestAPIServerDownDuringApply(t *testing.T) {
	const outage = 45 * time.Second
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
	// Armed, the first request that is not a read cuts the API server off
	// before it is sent.
	var (
		mu     sync.Mutex
		armed  bool
		cutAt  string
		cutOff = make(chan struct{})
	)
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			if armed && r.Method != http.MethodGet {
				armed, cutAt = false, r.Method+" "+r.URL.Path
				proxy.cutAll()
				close(cutOff)
			}
			mu.Unlock()
			return next.RoundTrip(r)
		})
	})
	var logs syncBuffer
	b, err := kube.New(rc, kube.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	v1, v2 := fakeRelease("v1"), fakeRelease("v2")
	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, 2)); err != nil {
		t.Fatal(err)
	}

	var progress syncBuffer
	pctx := deploy.WithProgress(ctx, func(msg string) { progress.Write([]byte(msg + "\n")) })
	mu.Lock()
	armed = true
	mu.Unlock()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- b.Apply(pctx, withRelease(baseSpec(app, "dev"), v2, 2)) }()
	select {
	case <-cutOff:
	case err := <-done:
		t.Fatalf("the rollout ended before its first write: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the rollout made no write within a minute")
	}
	t.Logf("API server cut off at %s", cutAt)
	if !strings.Contains(cutAt, "/deployments/") && !strings.Contains(cutAt, "/services/") && !strings.Contains(cutAt, "/namespaces/") {
		t.Errorf("the first write of the rollout was %s, want the apply of a manifest", cutAt)
	}

	time.Sleep(outage)
	select {
	case err := <-done:
		t.Fatalf("the rollout ended while the API server was unreachable: %v", err)
	default:
	}
	// What runs, read straight from the API server (not through the cut).
	cs := clientset(t)
	d, err := cs.AppsV1().Deployments(app+"-dev").Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != v1.Image || d.Status.ReadyReplicas != 2 {
		t.Errorf("while the API server was cut off the Deployment runs %s with %d ready, want v1 (%s) with 2", img, d.Status.ReadyReplicas, v1.Image)
	}
	_, serr := b.Status(ctx, "dev")
	if serr == nil || !strings.Contains(serr.Error(), proxy.l.Addr().String()) {
		t.Errorf("status while the API server is unreachable = %v, want an error naming the server", serr)
	}
	t.Logf("status while unreachable: %v", serr)
	if said := progress.String(); !strings.Contains(said, "unreachable, waiting for it") {
		t.Errorf("the rollout's progress does not say the API server is unreachable:\n%s", said)
	}

	proxy.restore()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the rollout after the API server came back: %v\nprogress:\n%s", err, progress.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the rollout did not complete within 3 minutes of the API server's return; progress:\n%s", progress.String())
	}
	t.Logf("rollout completed %s after it started (API server cut off for %s at its first write)", time.Since(start).Round(time.Second), outage)
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
