//go:build integration

package kube

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/testenv"
)

// The manifests of deploy/kubernetes give slipway's service account what it
// needs in the namespaces it manages, and nothing in others.
func TestInClusterRBAC(t *testing.T) {
	ctx := t.Context()
	kubeconfig := testenv.Env(t, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
	kubectl := kubectlPath(t, kubeconfig)
	dir := filepath.Join("..", "..", "deploy", "kubernetes")
	out := run(ctx, t, kubectl, "apply", "-f", filepath.Join(dir, "namespaces.yaml"))
	t.Log(out)
	cs := client(t)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "slipway", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		run(ctx, t, kubectl, "create", "namespace", "slipway")
	}
	run(ctx, t, kubectl, "apply", "-f", filepath.Join(dir, "rbac.yaml"))
	t.Cleanup(func() {
		for _, ns := range []string{"birthday-app-dev", "birthday-app-prod", "slipway"} {
			cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
		cs.RbacV1().ClusterRoles().Delete(context.Background(), "slipway-environment", metav1.DeleteOptions{})
		cs.RbacV1().ClusterRoles().Delete(context.Background(), "slipway-namespaces", metav1.DeleteOptions{})
		cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), "slipway-namespaces", metav1.DeleteOptions{})
	})

	// The API server's authorizer learns of new bindings through a watch:
	// wait until it grants the service account what Apply needs first.
	const sa = "system:serviceaccount:slipway:slipway"
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Verb: "patch", Resource: "namespaces", Name: "birthday-app-dev"},
		{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "birthday-app-dev"},
	} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			review, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: sa, ResourceAttributes: &ra},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s may not %s %s %s/%s 30 s after rbac.yaml was applied: %s", sa, ra.Verb, ra.Resource,
					ra.Namespace, ra.Name, review.Status.Reason)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	cfg := testConfig("birthday-app", config.DefaultEnvironment("dev"), config.DefaultEnvironment("staging"))
	rc, err := kube.RESTConfig(cfg.Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	rc.Impersonate.UserName = "system:serviceaccount:slipway:slipway"
	b, err := kube.New(rc, kube.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	spec := withRelease(baseSpec("birthday-app", "dev"), fakeRelease("v1"), 2)
	if err := b.Apply(ctx, spec); err != nil {
		t.Fatalf("Apply as slipway's service account: %v", err)
	}
	if st, err := b.Status(ctx, "dev"); err != nil || st.Replicas.Ready != 2 {
		t.Fatalf("Status as slipway's service account: %+v, %v", st, err)
	}
	var lines strings.Builder
	if err := b.Logs(ctx, "dev", false, &lines); err != nil {
		t.Errorf("Logs as slipway's service account: %v", err)
	}
	if err := b.Stop(ctx, "dev"); err != nil {
		t.Fatalf("Stop as slipway's service account: %v", err)
	}
	// A namespace it was not given stays out of reach.
	spec.Environment = "staging"
	err = b.Apply(ctx, spec)
	if err == nil || !apierrors.IsForbidden(errors.Unwrap(err)) && !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("Apply to an unmanaged namespace as slipway's service account = %v, want forbidden", err)
	}
	if errors.Is(err, deploy.ErrInvalidSpec) {
		t.Errorf("Apply to an unmanaged namespace: %v is not a spec mistake", err)
	}
}
