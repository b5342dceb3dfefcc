//go:build integration

package kube

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/testenv"
)

// TestReleasePhaseJob runs release phases as Jobs in the environment's
// namespace while it serves v1: one that completes, with its pod's output
// copied; one whose pod fails (the test cluster fails a Job's pod
// annotated slipway.dev/test-job-fail), which says so and leaves v1
// serving. The Job's pod has the environment's variables and the release
// command, and nothing routes to it.
func TestReleasePhaseJob(t *testing.T) {
	ctx := t.Context()
	kubeconfig := testenv.Env(t, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
	podsLog := filepath.Join(filepath.Dir(kubeconfig), "pods.log")
	if _, err := os.Stat(podsLog); err != nil {
		t.Fatalf("the test cluster serves no container output (scripts/testcluster up writes %s): %v", podsLog, err)
	}
	app := testApp(t)
	b := newBackend(t, testConfig(app))
	v1 := withRelease(baseSpec(app, "dev"), fakeRelease("v1"), 1)
	if err := b.Apply(ctx, v1); err != nil {
		t.Fatal(err)
	}
	v2 := withRelease(baseSpec(app, "dev"), fakeRelease("v2"), 1)
	v2.Env = map[string]string{"DATABASE_URL": "postgres://db.internal/app"}
	mark := app + " migrations applied"
	appendLine(t, podsLog, mark)

	var out deploy.TailBuffer
	job := deploy.ReleaseJob{ID: "41", Command: []string{"/app/" + app, "migrate"}, Timeout: time.Minute}
	if err := b.RunRelease(ctx, v2, job, &out); err != nil {
		t.Fatalf("release phase: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), mark) {
		t.Errorf("the Job's output lacks %q:\n%s", mark, out.String())
	}
	cs := clientset(t)
	ns := app + "-dev"
	j, err := cs.BatchV1().Jobs(ns).Get(ctx, kube.ReleaseJobName(app, "41"), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the release phase's Job: %v", err)
	}
	c := j.Spec.Template.Spec.Containers[0]
	if c.Image != v2.Image || strings.Join(c.Command, " ") != "/app/"+app+" migrate" || len(c.Ports) != 0 || c.ReadinessProbe != nil {
		t.Errorf("the Job's container: image %s, command %v, ports %v, readiness %v", c.Image, c.Command, c.Ports, c.ReadinessProbe)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["DATABASE_URL"] != "postgres://db.internal/app" || env["PORT"] != "" {
		t.Errorf("the Job's variables: %v; want DATABASE_URL and no PORT", env)
	}
	if _, ok := j.Spec.Template.Labels[kube.LabelInstance]; ok {
		t.Errorf("the Job's pod carries %s, which the Service selects", kube.LabelInstance)
	}

	failing := v2
	failing.Annotations = map[string]string{"slipway.dev/test-job-fail": "true"}
	out = deploy.TailBuffer{}
	err = b.RunRelease(ctx, failing, deploy.ReleaseJob{ID: "42", Command: []string{"/app/" + app, "migrate"}, Timeout: time.Minute}, &out)
	var re *deploy.ReleaseError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "exited with status 1") {
		t.Errorf("a failing Job: %v; want a release error saying it exited with status 1", err)
	}
	if !strings.Contains(out.String(), mark) {
		t.Errorf("the failed Job's output lacks %q:\n%s", mark, out.String())
	}
	st, err := b.Status(ctx, "dev")
	if err != nil || st.Commit != v1.Commit {
		t.Errorf("after the release phases dev serves %s (%v), want v1", st.Commit, err)
	}
}

func clientset(t *testing.T) kubernetes.Interface {
	t.Helper()
	rc, err := kube.RESTConfig(testConfig("x").Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
