//go:build integration

package kube

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/testenv"
)

// counter counts the API requests a client sends, by method and kind of
// call (watch or not).
type counter struct {
	mu sync.Mutex
	n  map[string]int
	rt http.RoundTripper
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	k := r.Method
	if r.URL.Query().Get("watch") == "true" {
		k = "WATCH"
	}
	c.mu.Lock()
	c.n[k]++
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// BenchmarkDeploy rolls a new release out to 4 and to 100 replicas on kwok
// and reports slipway's Apply time beside the Deployment controller's own
// rollout time (from the moment the applied Deployment is stored to the
// moment an independent watch sees the rollout complete), the difference
// (what slipway adds: reading the previous release, applying the namespace,
// Service and Deployment, and noticing completion), and the API requests
// per deploy.
func BenchmarkDeploy(b *testing.B) {
	for _, replicas := range []int{4, 100} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			testenv.Env(b, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
			app := fmt.Sprintf("b%d%s", replicas, testApp(b))
			cfg := testConfig(app)
			rc, err := kube.RESTConfig(cfg.Kubernetes)
			if err != nil {
				b.Fatal(err)
			}
			cnt := &counter{n: map[string]int{}}
			rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { cnt.rt = rt; return cnt }
			be, err := kube.New(rc, kube.Options{Config: cfg})
			if err != nil {
				b.Fatal(err)
			}
			newBackend(b, cfg) // removes the namespace at the end
			plain, err := kube.RESTConfig(cfg.Kubernetes)
			if err != nil {
				b.Fatal(err)
			}
			cs := kubernetes.NewForConfigOrDie(plain)
			ctx := context.Background()
			ns := app + "-prod"
			spec := baseSpec(app, "prod")
			spec.Strategy.MaxSurge = replicas / 4
			// A bound for a loaded machine, not a speed target.
			spec.Strategy.ReadyTimeout = 5 * time.Minute
			if err := be.Apply(ctx, withRelease(spec, fakeRelease("warm"), replicas)); err != nil {
				b.Fatal(err)
			}
			cnt.take()
			var applyTotal, ctrlTotal time.Duration
			reqs := map[string]int{}
			b.ResetTimer()
			for i := range b.N {
				done := watchCompletion(ctx, b, cs, ns, app)
				start := time.Now()
				if err := be.Apply(ctx, withRelease(spec, fakeRelease(fmt.Sprint("r", i)), replicas)); err != nil {
					b.Fatal(err)
				}
				applied := time.Since(start)
				stored, complete := done()
				applyTotal += applied
				ctrlTotal += complete.Sub(stored)
				for k, v := range cnt.take() {
					reqs[k] += v
				}
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(applyTotal.Milliseconds())/n, "apply-ms/op")
			b.ReportMetric(float64(ctrlTotal.Milliseconds())/n, "controller-ms/op")
			b.ReportMetric(float64((applyTotal-ctrlTotal).Milliseconds())/n, "added-ms/op")
			total := 0
			var keys []string
			for k, v := range reqs {
				total += v
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b.ReportMetric(float64(total)/n, "requests/op")
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(reqs[k])/n))
			}
			b.Logf("API requests per deploy: %s", strings.Join(parts, ", "))
		})
	}
}

// watchCompletion watches the Deployment from now on, independently of
// slipway; done returns when the first new generation was seen stored and
// when its rollout was seen complete.
func watchCompletion(ctx context.Context, b *testing.B, cs kubernetes.Interface, ns, name string) (done func() (stored, complete time.Time)) {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	w, err := cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: d.ResourceVersion,
	})
	if err != nil {
		b.Fatal(err)
	}
	gen := d.Generation
	type result struct{ stored, complete time.Time }
	ch := make(chan result, 1)
	go func() {
		defer w.Stop()
		var r result
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified {
				continue
			}
			cur := ev.Object.(*appsv1.Deployment)
			if cur.Generation > gen && r.stored.IsZero() {
				r.stored = time.Now()
			}
			s := cur.Status
			if !r.stored.IsZero() && s.ObservedGeneration >= cur.Generation && s.UpdatedReplicas == *cur.Spec.Replicas &&
				s.Replicas == *cur.Spec.Replicas && s.AvailableReplicas == *cur.Spec.Replicas {
				r.complete = time.Now()
				ch <- r
				return
			}
		}
	}()
	return func() (time.Time, time.Time) {
		select {
		case r := <-ch:
			return r.stored, r.complete
		case <-time.After(5 * time.Minute):
			b.Fatal("the benchmark's own watch never saw the rollout complete")
			return time.Time{}, time.Time{}
		}
	}
}
