//go:build integration

// Package kube checks the test cluster that scripts/testcluster starts: the
// API server answers as Kubernetes v1.34.4, Deployments roll out on kwok's
// fake node, a pod annotated slipway.dev/test-never-ready never becomes ready,
// and kubectl works with the printed kubeconfig. The Kubernetes tests of
// slipway rely on all of this.
package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"

	"slipway.dev/slipway/internal/testenv"
)

// neverReady is the pod annotation the test cluster's kwok Stages honour:
// such pods run but never pass readiness.
const neverReady = "slipway.dev/test-never-ready"

func TestCluster(t *testing.T) {
	kubeconfig := testenv.Env(t, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
	cs := client(t)
	// A bound on a broken cluster, not a speed check: every wait below ends
	// on an event.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("ask the API server its version: %v", err)
	}
	if v.GitVersion != "v1.34.4" {
		t.Errorf("server version = %q, want v1.34.4", v.GitVersion)
	}

	ns := namespace(ctx, t, cs)

	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("web", 2, false), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment web: %v", err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("stuck", 1, true), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment stuck: %v", err)
	}

	web := waitDeployment(ctx, t, cs, ns, "web", func(d *appsv1.Deployment) bool {
		return d.Status.ObservedGeneration >= d.Generation &&
			d.Status.UpdatedReplicas == 2 && d.Status.AvailableReplicas == 2
	})
	if web.Status.ReadyReplicas != 2 {
		t.Errorf("web: %d ready replicas, want 2", web.Status.ReadyReplicas)
	}

	// The never-ready Deployment ends when its progress deadline passes: the
	// controller marks it Progressing=False, ProgressDeadlineExceeded. The
	// wait also ends, and the checks below fail, if its pod becomes ready.
	stuck := waitDeployment(ctx, t, cs, ns, "stuck", func(d *appsv1.Deployment) bool {
		c := condition(d, appsv1.DeploymentProgressing)
		return c != nil && c.Status == corev1.ConditionFalse || d.Status.AvailableReplicas > 0
	})
	if c := condition(stuck, appsv1.DeploymentProgressing); c == nil || c.Status != corev1.ConditionFalse || c.Reason != "ProgressDeadlineExceeded" {
		t.Errorf("stuck: Progressing condition %+v, want False with reason ProgressDeadlineExceeded", c)
	}
	if stuck.Status.AvailableReplicas != 0 {
		t.Errorf("stuck: %d available replicas, want 0", stuck.Status.AvailableReplicas)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=stuck"})
	if err != nil {
		t.Fatalf("list pods of stuck: %v", err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("stuck has %d pods, want 1", len(pods.Items))
	}
	p := pods.Items[0]
	ready := podCondition(&p, corev1.PodReady)
	if p.Status.Phase != corev1.PodRunning || ready == nil || ready.Status != corev1.ConditionFalse {
		t.Errorf("pod %s: phase %s, Ready condition %+v; want Running and not Ready", p.Name, p.Status.Phase, ready)
	}

	kubectl := kubectlPath(t, kubeconfig)
	out := run(ctx, t, kubectl, "get", "deployments", "--namespace", ns,
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.status.availableReplicas}/{.spec.replicas}{"\n"}{end}`)
	if diff := cmp.Diff("stuck /1\nweb 2/2\n", out); diff != "" {
		t.Errorf("kubectl get deployments (-want +got):\n%s", diff)
	}
	out = run(ctx, t, kubectl, "get", "deploy", "--namespace", ns)
	for _, want := range []string{"NAME", "web", "2/2", "stuck", "0/1"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get deploy does not show %q:\n%s", want, out)
		}
	}
}

func client(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		t.Fatalf("load the kubeconfig named by KUBECONFIG: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("create a Kubernetes client: %v", err)
	}
	return cs
}

// namespace creates a namespace of its own for the test and deletes it when
// the test ends.
func namespace(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "smoke-" + hex.EncodeToString(b)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

func deployment(name string, replicas int32, stuck bool) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	var annotations map[string]string
	if stuck {
		annotations = map[string]string{neverReady: "true"}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas:                new(replicas),
			Selector:                &metav1.LabelSelector{MatchLabels: labels},
			ProgressDeadlineSeconds: new(int32(2)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "app",
						Image: "registry.invalid/smoke/" + name + ":1",
					}},
				},
			},
		},
	}
}

// waitDeployment watches the Deployment until done reports true and returns
// it as it was then.
func waitDeployment(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, done func(*appsv1.Deployment) bool) *appsv1.Deployment {
	t.Helper()
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return cs.AppsV1().Deployments(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return cs.AppsV1().Deployments(ns).Watch(ctx, o)
		},
	}
	var last *appsv1.Deployment
	ev, err := watchtools.UntilWithSync(ctx, lw, &appsv1.Deployment{}, nil, func(e watch.Event) (bool, error) {
		d, ok := e.Object.(*appsv1.Deployment)
		if !ok {
			return false, nil
		}
		last = d
		return done(d), nil
	})
	if err != nil {
		t.Fatalf("wait for deployment %s/%s: %v; last seen status: %+v", ns, name, err, status(last))
	}
	return ev.Object.(*appsv1.Deployment)
}

func status(d *appsv1.Deployment) any {
	if d == nil {
		return "none"
	}
	return d.Status
}

func condition(d *appsv1.Deployment, typ appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == typ {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// kubectlPath prefers the kubectl scripts/testcluster links beside the
// kubeconfig (the same version as the cluster), then one on PATH.
func kubectlPath(t *testing.T, kubeconfig string) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(kubeconfig), "bin", "kubectl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return testenv.LookPath(t, "kubectl")
}

func run(ctx context.Context, t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
