//go:build integration

package kube

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/deploytest"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/testenv"
)

// fakeRelease is a build whose image is never pulled (kwok runs no
// container): a digest made from its name, and a commit likewise.
func fakeRelease(name string) deploytest.Release {
	d := sha256.Sum256([]byte("image " + name))
	c := sha256.Sum256([]byte("commit " + name))
	commit := hex.EncodeToString(c[:20])
	return deploytest.Release{
		Image:   "registry.example/app@sha256:" + hex.EncodeToString(d[:]),
		Commit:  commit,
		Version: name,
	}
}

// testApp is an app name of its own for each test, so its namespaces
// ({{.App}}-{{.Environment}}) are too.
func testApp(t testing.TB) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "sw" + hex.EncodeToString(b)
}

// newBackend makes a kubernetes backend for cfg on the cluster KUBECONFIG
// names and removes the namespaces of cfg.App when the test ends.
func newBackend(t testing.TB, cfg *config.Config) *kube.Backend {
	t.Helper()
	testenv.Env(t, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
	rc, err := kube.RESTConfig(cfg.Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	b, err := kube.New(rc, kube.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: kube.LabelName + "=" + cfg.App})
		if err != nil {
			t.Errorf("list namespaces of %s: %v", cfg.App, err)
			return
		}
		for _, ns := range nss.Items {
			if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete namespace %s: %v", ns.Name, err)
			}
		}
	})
	return b
}

func testConfig(app string, envs ...config.Environment) *config.Config {
	cfg := config.Default()
	cfg.App = app
	cfg.Runtime = config.RuntimeKubernetes
	cfg.Environments = envs
	return cfg
}

func baseSpec(app, env string) deploy.Spec {
	return deploy.Spec{
		Environment:   env,
		App:           app,
		Port:          8080,
		ReadinessPath: "/readyz",
		LivenessPath:  "/healthz",
		Strategy:      deploy.Strategy{MaxSurge: 1, ReadyTimeout: 30 * time.Second, TerminationGracePeriod: time.Second},
	}
}

func withRelease(s deploy.Spec, rel deploytest.Release, replicas int) deploy.Spec {
	s.Image, s.Commit, s.Version, s.Replicas = rel.Image, rel.Commit, rel.Version, replicas
	s.Annotations = rel.Annotations
	return s
}

func TestConformance(t *testing.T) {
	app := testApp(t)
	cfg := testConfig(app)
	broken := fakeRelease("never-ready")
	broken.Annotations = map[string]string{neverReady: "true"}
	deploytest.Run(t, func(t testing.TB) deploy.Backend { return newBackend(t, cfg) }, deploytest.Fixture{
		V1:     fakeRelease("v1"),
		V2:     fakeRelease("v2"),
		Broken: broken,
		Spec: func(t testing.TB, env string) deploy.Spec {
			return baseSpec(app, env)
		},
		BrokenReadyTimeout: 3 * time.Second,
		Simulated:          true,
	})
}

// A release whose pods never become ready runs into its progress deadline;
// slipway puts the previous release back, and says which pods failed.
func TestNeverReadyRollsBack(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	cfg := testConfig(app)
	b := newBackend(t, cfg)
	v1, bad := fakeRelease("v1"), fakeRelease("bad")
	bad.Annotations = map[string]string{neverReady: "true"}
	spec := baseSpec(app, "prod")
	if err := b.Apply(ctx, withRelease(spec, v1, 3)); err != nil {
		t.Fatalf("Apply(v1): %v", err)
	}
	s := withRelease(spec, bad, 3)
	s.Strategy.ReadyTimeout = 2 * time.Second
	s.Cause = "release bad"
	err := b.Apply(ctx, s)
	var re *deploy.RolloutError
	if !errors.As(err, &re) {
		t.Fatalf("Apply(never-ready) = %v, want a *deploy.RolloutError", err)
	}
	t.Logf("rollout error: %v", re)
	for _, want := range []string{"no progress within the deadline of 2s", "pod " + re.Replica, "not ready", "v1 (" + v1.Image + ") applied again"} {
		if re.Replica == "" || !strings.Contains(re.Reason, want) {
			t.Errorf("RolloutError reason %q does not say %q (replica %q)", re.Reason, want, re.Replica)
		}
	}
	st, err := b.Status(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if st.Image != v1.Image || st.Version != "v1" || st.Replicas.Ready != 3 || !st.Healthy {
		t.Errorf("after the rollback Status = %+v, want v1 with 3 ready replicas, healthy", st)
	}
	hist, err := b.History(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	last := hist[len(hist)-1]
	if last.Image != v1.Image || !strings.Contains(last.Cause, "automatic rollback to v1 after bad failed") {
		t.Errorf("last revision = %+v, want v1's image with the automatic rollback as its cause", last)
	}
}

// The first deployment of an environment that never becomes ready leaves
// nothing behind: there is no previous release to go back to.
func TestNeverReadyFirstDeploy(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	b := newBackend(t, testConfig(app))
	bad := fakeRelease("bad")
	bad.Annotations = map[string]string{neverReady: "true"}
	s := withRelease(baseSpec(app, "dev"), bad, 1)
	s.Strategy.ReadyTimeout = time.Second
	var re *deploy.RolloutError
	if err := b.Apply(ctx, s); !errors.As(err, &re) {
		t.Fatalf("Apply(never-ready) = %v, want a *deploy.RolloutError", err)
	}
	if _, err := b.Status(ctx, "dev"); !errors.Is(err, deploy.ErrNotDeployed) {
		t.Errorf("after a failed first deploy, Status error = %v, want ErrNotDeployed", err)
	}
}

// Scaling changes the Deployment's replicas only: kubectl sees the same
// ReplicaSet, with the new count.
func TestScaling(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	b := newBackend(t, testConfig(app))
	kubectl := kubectlPath(t, testenv.Env(t, "KUBECONFIG", "Kubernetes cluster"))
	ns := app + "-dev"
	v1 := fakeRelease("v1")
	for _, n := range []int{2, 7, 1} {
		if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, n)); err != nil {
			t.Fatalf("Apply(%d replicas): %v", n, err)
		}
		st, err := b.Status(ctx, "dev")
		if err != nil {
			t.Fatal(err)
		}
		if got := (deploy.Replicas{Desired: n, Ready: n, Updated: n}); st.Replicas != got || len(st.Instances) != n {
			t.Errorf("after scaling to %d: replicas %+v, %d instances", n, st.Replicas, len(st.Instances))
		}
		out := run(ctx, t, kubectl, "-n", ns, "get", "deployment", app, "-o", "jsonpath={.spec.replicas} {.status.readyReplicas}")
		if want := fmt.Sprintf("%d %d", n, n); out != want {
			t.Errorf("kubectl: replicas and ready = %q, want %q", out, want)
		}
		rs := run(ctx, t, kubectl, "-n", ns, "get", "replicasets", "-o", "name")
		if c := strings.Count(strings.TrimSpace(rs), "\n") + 1; c != 1 {
			t.Errorf("after scaling to %d, %d ReplicaSets, want 1 (scaling must not roll out):\n%s", n, c, rs)
		}
	}
}

// HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy, ResourceQuota,
// Secret environment and pull secrets appear as configured, and leave when
// the configuration drops them.
func TestConfiguredObjects(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	dev := config.DefaultEnvironment("dev")
	dev.Kubernetes = config.EnvKubernetes{
		Resources:           config.Resources{Requests: config.ResourceList{CPU: "100m", Memory: "64Mi"}, Limits: config.ResourceList{CPU: "500m", Memory: "128Mi"}},
		Autoscaling:         config.Autoscaling{MinReplicas: 2, MaxReplicas: 6, TargetCPUPercent: 70},
		PodDisruptionBudget: config.PodDisruptionBudget{MinAvailable: "1"},
		NetworkPolicy:       config.NetworkPolicy{InternalOnly: true},
		Quota:               config.Quota{CPU: "4", Memory: "2Gi", Pods: 20},
		SecretEnv:           []config.SecretEnv{{Name: "DATABASE_URL", Secret: "db", Key: "url"}},
		ImagePullSecrets:    []string{"pull"},
	}
	cfg := testConfig(app, dev)
	b := newBackend(t, cfg)
	rc, _ := kube.RESTConfig(cfg.Kubernetes)
	cs := kubernetes.NewForConfigOrDie(rc)
	ns := app + "-dev"
	v1 := fakeRelease("v1")
	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, 2)); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	hpa, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("HorizontalPodAutoscaler: %v", err)
	}
	if got := fmt.Sprintln(*hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, *hpa.Spec.Metrics[0].Resource.Target.AverageUtilization, hpa.Spec.ScaleTargetRef.Name); got != "2 6 70 "+app+"\n" {
		t.Errorf("HPA min, max, target, scale target = %s", got)
	}
	pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PodDisruptionBudget: %v", err)
	}
	if pdb.Spec.MinAvailable.String() != "1" || pdb.Spec.Selector.MatchLabels[kube.LabelInstance] != app+"-dev" {
		t.Errorf("PDB spec = %+v", pdb.Spec)
	}
	np, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("NetworkPolicy: %v", err)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].From[0].NamespaceSelector == nil || np.Spec.Ingress[0].From[0].IPBlock != nil {
		t.Errorf("NetworkPolicy ingress = %+v, want only pods of the cluster's namespaces", np.Spec.Ingress)
	}
	q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ResourceQuota: %v", err)
	}
	if p := q.Spec.Hard["pods"]; p.String() != "20" {
		t.Errorf("quota pods = %s, want 20", p.String())
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	var secret string
	for _, e := range c.Env {
		if e.Name == "DATABASE_URL" {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("DATABASE_URL = %+v, want it read from Secret db", e)
			} else {
				secret = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			}
		}
	}
	if secret != "db/url" {
		t.Errorf("DATABASE_URL from %q, want db/url", secret)
	}
	if got := fmt.Sprintln(c.Resources.Limits.Cpu(), c.Resources.Requests.Memory(), d.Spec.Template.Spec.ImagePullSecrets[0].Name); got != "500m 64Mi pull\n" {
		t.Errorf("limits cpu, requests memory, pull secret = %s", got)
	}
	for _, f := range d.ManagedFields {
		if f.Manager == kube.FieldManager && strings.Contains(string(f.FieldsV1.Raw), `"f:replicas"`) {
			t.Errorf("slipway claims spec.replicas beside an autoscaler: %s", f.FieldsV1.Raw)
		}
	}
	if d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 || d.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("strategy %+v, readiness %+v", d.Spec.Strategy.RollingUpdate, c.ReadinessProbe)
	}

	// Drop autoscaling and the disruption budget: both go.
	cfg.Environments[0].Kubernetes.Autoscaling = config.Autoscaling{}
	cfg.Environments[0].Kubernetes.PodDisruptionBudget = config.PodDisruptionBudget{}
	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, 3)); err != nil {
		t.Fatalf("Apply without autoscaling: %v", err)
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("HPA after autoscaling was dropped: %v, want not found", err)
	}
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("PDB after it was dropped: %v, want not found", err)
	}
	if _, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, app, metav1.GetOptions{}); err != nil {
		t.Errorf("NetworkPolicy, still configured: %v", err)
	}
}

// A database password in the environment is refused: it belongs in a Secret.
func TestPasswordInEnvRefused(t *testing.T) {
	app := testApp(t)
	b := newBackend(t, testConfig(app))
	s := withRelease(baseSpec(app, "dev"), fakeRelease("v1"), 1)
	s.Env = map[string]string{"DATABASE_URL": "postgres://app:hunter2@db/app"}
	err := b.Apply(t.Context(), s)
	if !errors.Is(err, deploy.ErrInvalidSpec) || !strings.Contains(err.Error(), "secretEnv") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Apply(password in env) = %v, want ErrInvalidSpec pointing at secretEnv, without the password", err)
	}
}

// An API server's refusal reaches the user as it said it: here, a namespace
// being deleted (held by a finalizer) takes no new objects.
func TestRefusalIsReadable(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	b := newBackend(t, testConfig(app))
	cs := client(t)
	ns := app + "-dev"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{kube.LabelName: app}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const finalizer = "slipway.dev/test-hold"
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "hold", Finalizers: []string{finalizer}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		patch := []byte(`{"metadata":{"finalizers":null}}`)
		cs.CoreV1().ConfigMaps(ns).Patch(context.Background(), "hold", types.MergePatchType, patch, metav1.PatchOptions{})
	})
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), fakeRelease("v1"), 1))
	if err == nil || !strings.Contains(err.Error(), "being terminated") || !apierrors.IsForbidden(errors.Unwrap(err)) {
		t.Fatalf("Apply into a namespace being deleted = %v, want the API server's Forbidden status and message", err)
	}
}

// kubectl and slipway agree on the digest, the replicas and the rollout
// history; an image changed by hand shows as drift.
func TestKubectlAgrees(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	b := newBackend(t, testConfig(app))
	kubectl := kubectlPath(t, testenv.Env(t, "KUBECONFIG", "Kubernetes cluster"))
	ns := app + "-prod"
	spec := baseSpec(app, "prod")
	v1, v2 := fakeRelease("RC20250101_1200"), fakeRelease("RC20250102_1200")
	for _, step := range []struct {
		rel   deploytest.Release
		cause string
	}{{v1, "release 1 (cli)"}, {v2, "release 2 (cli)"}} {
		s := withRelease(spec, step.rel, 4)
		s.Cause = step.cause
		if err := b.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.Status(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	out := run(ctx, t, kubectl, "-n", ns, "get", "deployment", app, "-o",
		"jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}/{.spec.replicas} {.metadata.labels.app\\.kubernetes\\.io/version}")
	want := fmt.Sprintf("%s %d/%d %s", st.Image, st.Replicas.Ready, st.Replicas.Desired, st.Version)
	if out != want || st.Image != v2.Image {
		t.Errorf("kubectl says %q, slipway status says %q (want image %s)", out, want, v2.Image)
	}
	hist := run(ctx, t, kubectl, "-n", ns, "rollout", "history", "deployment/"+app)
	for _, w := range []string{"1         slipway: " + app + " RC20250101_1200", "release 1 (cli)", "2         slipway: " + app + " RC20250102_1200", "release 2 (cli)"} {
		if !strings.Contains(hist, w) {
			t.Errorf("kubectl rollout history lacks %q:\n%s", w, hist)
		}
	}
	revs, err := b.History(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range revs {
		got = append(got, fmt.Sprintf("%d %s", r.Number, r.Image))
	}
	if diff := cmp.Diff([]string{"1 " + v1.Image, "2 " + v2.Image}, got); diff != "" {
		t.Errorf("History (-want +got):\n%s", diff)
	}

	// Someone sets the image by hand.
	other := fakeRelease("hand-made").Image
	run(ctx, t, kubectl, "-n", ns, "set", "image", "deployment/"+app, "app="+other)
	run(ctx, t, kubectl, "-n", ns, "rollout", "status", "deployment/"+app, "--timeout=60s")
	st, err = b.Status(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if st.Image != other || st.Healthy || !strings.Contains(st.Message, "drift: the Deployment runs image "+other+", but slipway applied "+v2.Image) {
		t.Errorf("after kubectl set image: Status image %s, healthy %v, message %q; want the hand-set image, unhealthy, and drift named", st.Image, st.Healthy, st.Message)
	}
	// The next deploy puts slipway's image back.
	if err := b.Apply(ctx, withRelease(spec, v2, 4)); err != nil {
		t.Fatal(err)
	}
	if st, err = b.Status(ctx, "prod"); err != nil || st.Image != v2.Image || !st.Healthy {
		t.Errorf("after a new deploy: Status %+v, %v; want v2, healthy", st, err)
	}
}
