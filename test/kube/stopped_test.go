//go:build integration

package kube

import (
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy/kube"
)

// TestStoppedAutoscaled stops an autoscaled environment (0 replicas): the
// Deployment is scaled to 0 and its autoscaler removed, so that nothing
// brings a replica back; the Service stays. Started again, both are as
// before.
func TestStoppedAutoscaled(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	dev := config.DefaultEnvironment("dev")
	dev.Kubernetes.Autoscaling = config.Autoscaling{MinReplicas: 2, MaxReplicas: 4, TargetCPUPercent: 70}
	cfg := testConfig(app, dev)
	b := newBackend(t, cfg)
	rc, _ := kube.RESTConfig(cfg.Kubernetes)
	cs := kubernetes.NewForConfigOrDie(rc)
	ns := app + "-dev"
	v1 := fakeRelease("v1")

	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, 2)); err != nil {
		t.Fatalf("Apply(2 replicas): %v", err)
	}
	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, 0)); err != nil {
		t.Fatalf("Apply(0 replicas): %v", err)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
		t.Errorf("stopped: Deployment replicas = %v, want 0", d.Spec.Replicas)
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("stopped: HorizontalPodAutoscaler: %v, want it removed", err)
	}
	if _, err := cs.CoreV1().Services(ns).Get(ctx, app, metav1.GetOptions{}); err != nil {
		t.Errorf("stopped: Service: %v, want it kept", err)
	}
	st, err := b.Status(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Stopped || st.Healthy || st.Replicas.Desired != 0 || st.Replicas.Ready != 0 || st.Commit != v1.Commit {
		t.Errorf("stopped: status = %+v, want stopped, not healthy, 0 replicas, commit %s", st, v1.Commit)
	}

	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, 2)); err != nil {
		t.Fatalf("Apply(2 replicas) to start it: %v", err)
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, app, metav1.GetOptions{}); err != nil {
		t.Errorf("started: HorizontalPodAutoscaler: %v, want it back", err)
	}
	st, err = b.Status(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if st.Stopped || st.Replicas.Ready < 1 {
		t.Errorf("started: status = %+v, want replicas ready and not stopped", st)
	}
}
