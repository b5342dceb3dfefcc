//go:build integration

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/testenv"
)

// kubeCluster is the test cluster (scripts/testcluster) as the Kubernetes
// tests of this package use it: its kubeconfig, a client, and a prefix
// unique to the test for the namespaces slipway makes, which are deleted
// when the test ends.
type kubeCluster struct {
	t          *testing.T
	kubeconfig string
	cs         kubernetes.Interface
	prefix     string
}

func newKubeCluster(t *testing.T) *kubeCluster {
	t.Helper()
	kubeconfig := testenv.Env(t, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
	b := make([]byte, 3)
	rand.Read(b)
	rc, err := kube.RESTConfig(config.Kubernetes{Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	k := &kubeCluster{t: t, kubeconfig: kubeconfig, cs: kubernetes.NewForConfigOrDie(rc), prefix: "e2e" + hex.EncodeToString(b)}
	t.Cleanup(func() {
		ctx := context.Background()
		list, err := k.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Logf("list namespaces to delete: %v", err)
			return
		}
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, k.prefix+"-") {
				k.cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
			}
		}
	})
	return k
}

// kubectl runs the cluster's kubectl (scripts/testcluster links it beside
// the kubeconfig) and returns its output; ok is false when there is none.
func (k *kubeCluster) kubectl(args ...string) (out string, ok bool) {
	k.t.Helper()
	bin := filepath.Join(filepath.Dir(k.kubeconfig), "bin", "kubectl")
	if _, err := os.Stat(bin); err != nil {
		return "", false
	}
	b, err := exec.Command(bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return string(b), true
}

// checkDeployment checks that the Deployment name in namespace ns runs the
// image s reports, labelled with commit (which s reports too), with the
// replicas s reports.
func (k *kubeCluster) checkDeployment(ns, name string, s pipeline.EnvStatus, commit string) {
	k.t.Helper()
	d, err := k.cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatalf("%s: read the Deployment %s: %v", ns, name, err)
	}
	img := d.Spec.Template.Spec.Containers[0].Image
	if s.Image == nil || *s.Image != img || s.Commit == nil || *s.Commit != commit || d.Spec.Template.Labels[kube.LabelCommit] != commit {
		k.t.Errorf("%s: status says %s at %s, the cluster runs %s labelled %s; want commit %s", ns, deref(s.Image), deref(s.Commit), img, d.Spec.Template.Labels[kube.LabelCommit], commit)
	}
	if int(d.Status.ReadyReplicas) != s.Replicas.Ready || int(*d.Spec.Replicas) != s.Replicas.Desired {
		k.t.Errorf("%s: status says %d/%d replicas, the cluster %d/%d", ns, s.Replicas.Ready, s.Replicas.Desired, d.Status.ReadyReplicas, *d.Spec.Replicas)
	}
}
