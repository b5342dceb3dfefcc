//go:build integration

package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/testenv"
)

// gatewayAPIModule is the Go module whose config/crd/standard holds the
// Gateway API CRDs the HTTPRoute test installs: fetched through the Go
// module proxy, like the test cluster's binaries.
const gatewayAPIModule = "sigs.k8s.io/gateway-api@v1.4.1"

var (
	httpRouteGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	crdGVR       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// An environment's Service type and Ingress are applied, changed and
// removed with the configuration, and status names the URL they give.
func TestServiceAndIngress(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	nodePort := 30000 + rand.IntN(2767)
	dev := config.DefaultEnvironment("dev")
	dev.Kubernetes.Service = config.Service{Type: config.ServiceNodePort, NodePort: nodePort, Annotations: map[string]string{"example.com/owner": "team"}}
	dev.Kubernetes.Ingress = config.Ingress{
		ClassName:   "nginx",
		Hosts:       []string{app + ".example.com"},
		Path:        "/birthday",
		TLSSecret:   app + "-tls",
		CertManager: config.CertManager{ClusterIssuer: "letsencrypt-staging"},
		Annotations: map[string]string{"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
	}
	cfg := testConfig(app, dev)
	cfg.Repo.URL = "/srv/app.git" // only for Validate: nothing is built
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the test's configuration: %v", err)
	}
	b := newBackend(t, cfg)
	rc, _ := kube.RESTConfig(cfg.Kubernetes)
	cs := kubernetes.NewForConfigOrDie(rc)
	ns := app + "-dev"
	v1 := fakeRelease("v1")
	apply := func(what string) {
		t.Helper()
		if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), v1, 1)); err != nil {
			t.Fatalf("Apply (%s): %v", what, err)
		}
	}
	apply("NodePort and Ingress")

	svc, err := cs.CoreV1().Services(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(svc.Spec.Type, " ", svc.Spec.Ports[0].NodePort, " ", svc.Annotations["example.com/owner"]); got != fmt.Sprint("NodePort ", nodePort, " team") {
		t.Errorf("service type, node port, annotation = %s", got)
	}
	ing, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Ingress: %v", err)
	}
	rule := ing.Spec.Rules[0]
	if got := fmt.Sprint(*ing.Spec.IngressClassName, " ", rule.Host, " ", rule.HTTP.Paths[0].Path, " ", rule.HTTP.Paths[0].Backend.Service.Name, " ",
		rule.HTTP.Paths[0].Backend.Service.Port.Name); got != "nginx "+app+".example.com /birthday "+app+" http" {
		t.Errorf("ingress class, host, path, backend = %s", got)
	}
	if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != app+"-tls" || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{app + ".example.com"}) {
		t.Errorf("ingress TLS = %+v", ing.Spec.TLS)
	}
	if ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt-staging" || ing.Annotations["nginx.ingress.kubernetes.io/proxy-body-size"] != "8m" {
		t.Errorf("ingress annotations = %v", ing.Annotations)
	}
	checkURL(t, b, "with an Ingress", "https://"+app+".example.com/birthday")

	// Without the Ingress, as a LoadBalancer the cloud has not served yet:
	// the Ingress goes, the node port is the way in.
	cfg.Environments[0].Kubernetes.Ingress = config.Ingress{}
	cfg.Environments[0].Kubernetes.Service = config.Service{Type: config.ServiceLoadBalancer}
	apply("LoadBalancer without Ingress")
	if _, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Ingress after it was dropped: %v, want not found", err)
	}
	svc, err = cs.CoreV1().Services(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Annotations["example.com/owner"] != "" {
		t.Errorf("service type %s, annotations %v; want LoadBalancer and the owner annotation gone", svc.Spec.Type, svc.Annotations)
	}
	checkURL(t, b, "pending load balancer", fmt.Sprintf("http://127.0.0.1:%d", svc.Spec.Ports[0].NodePort))

	// The cloud's controller gives the load balancer its address (here the
	// test does, as there is no cloud).
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.10"}}
	if _, err := cs.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("give the load balancer an address: %v", err)
	}
	checkURL(t, b, "load balancer with an address", "http://203.0.113.10")

	// Back to the default: a ClusterIP Service without node port, reached
	// by its cluster DNS name.
	cfg.Environments[0].Kubernetes.Service = config.Service{}
	apply("ClusterIP")
	svc, err = cs.CoreV1().Services(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Ports[0].NodePort != 0 {
		t.Errorf("service type %s, node port %d; want ClusterIP without node port", svc.Spec.Type, svc.Spec.Ports[0].NodePort)
	}
	checkURL(t, b, "ClusterIP", "http://"+app+"."+ns+".svc.cluster.local")
}

// An HTTPRoute needs the Gateway API: without its CRDs the apply says what
// to install and applies nothing; with them the route is applied, attached
// to the Gateway named, and removed when an Ingress takes its place.
func TestHTTPRoute(t *testing.T) {
	ctx := t.Context()
	app := testApp(t)
	dev := config.DefaultEnvironment("dev")
	dev.Kubernetes.HTTPRoute = config.HTTPRoute{
		Gateway:     config.GatewayRef{Name: "public", Namespace: "gateway-system", SectionName: "http"},
		Hostnames:   []string{app + ".example.com"},
		Path:        "/birthday",
		Annotations: map[string]string{"example.com/owner": "team"},
	}
	cfg := testConfig(app, dev)
	cfg.Repo.URL = "/srv/app.git" // only for Validate: nothing is built
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the test's configuration: %v", err)
	}
	b := newBackend(t, cfg)
	rc, _ := kube.RESTConfig(cfg.Kubernetes)
	cs := kubernetes.NewForConfigOrDie(rc)
	dyn := dynamic.NewForConfigOrDie(rc)
	ns := app + "-dev"
	spec := withRelease(baseSpec(app, "dev"), fakeRelease("v1"), 1)

	if !servesHTTPRoutes(t, cs) {
		err := b.Apply(ctx, spec)
		if !errors.Is(err, kube.ErrNoGatewayAPI) || !strings.Contains(err.Error(), "install the Gateway API CRDs") {
			t.Errorf("Apply without the Gateway API: %v, want ErrNoGatewayAPI saying what to install", err)
		}
		t.Logf("without the Gateway API: %v", err)
		if _, err := cs.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Deployment after the refused apply: %v, want not found", err)
		}
		installGatewayAPI(ctx, t, cs, dyn)
	} else {
		t.Log("the cluster serves HTTPRoutes already (an earlier run installed the Gateway API): the refusal without it is not checked")
	}

	if err := b.Apply(ctx, spec); err != nil {
		t.Fatalf("Apply with an HTTPRoute: %v", err)
	}
	u, err := dyn.Resource(httpRouteGVR).Namespace(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("HTTPRoute: %v", err)
	}
	var rt struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			ParentRefs []map[string]any `json:"parentRefs"`
			Hostnames  []string         `json:"hostnames"`
			Rules      []struct {
				Matches     []map[string]map[string]string `json:"matches"`
				BackendRefs []map[string]any               `json:"backendRefs"`
			} `json:"rules"`
		} `json:"spec"`
	}
	raw, _ := u.MarshalJSON()
	if err := json.Unmarshal(raw, &rt); err != nil {
		t.Fatal(err)
	}
	p := rt.Spec.ParentRefs
	if len(p) != 1 || p[0]["name"] != "public" || p[0]["namespace"] != "gateway-system" || p[0]["sectionName"] != "http" {
		t.Errorf("parentRefs = %v, want Gateway gateway-system/public, listener http", p)
	}
	if !slices.Equal(rt.Spec.Hostnames, []string{app + ".example.com"}) || rt.Metadata.Annotations["example.com/owner"] != "team" {
		t.Errorf("hostnames %v, annotations %v", rt.Spec.Hostnames, rt.Metadata.Annotations)
	}
	if r := rt.Spec.Rules; len(r) != 1 || r[0].Matches[0]["path"]["value"] != "/birthday" || r[0].Matches[0]["path"]["type"] != "PathPrefix" ||
		r[0].BackendRefs[0]["name"] != app || fmt.Sprint(r[0].BackendRefs[0]["port"]) != "80" {
		t.Errorf("rules = %+v, want /birthday (prefix) to service %s port 80", r, app)
	}
	checkURL(t, b, "with an HTTPRoute", "http://"+app+".example.com/birthday")

	// An Ingress instead: the HTTPRoute goes.
	cfg.Environments[0].Kubernetes.HTTPRoute = config.HTTPRoute{}
	cfg.Environments[0].Kubernetes.Ingress = config.Ingress{Hosts: []string{app + ".example.com"}}
	if err := b.Apply(ctx, spec); err != nil {
		t.Fatalf("Apply with an Ingress instead: %v", err)
	}
	if _, err := dyn.Resource(httpRouteGVR).Namespace(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("HTTPRoute after an Ingress took its place: %v, want not found", err)
	}
	if _, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, app, metav1.GetOptions{}); err != nil {
		t.Errorf("Ingress: %v", err)
	}

	// Stop removes the route too.
	cfg.Environments[0].Kubernetes.Ingress = config.Ingress{}
	cfg.Environments[0].Kubernetes.HTTPRoute = dev.Kubernetes.HTTPRoute
	if err := b.Apply(ctx, spec); err != nil {
		t.Fatalf("Apply with the HTTPRoute again: %v", err)
	}
	if err := b.Stop(ctx, "dev"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := dyn.Resource(httpRouteGVR).Namespace(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("HTTPRoute after Stop: %v, want not found", err)
	}
}

func checkURL(t *testing.T, b *kube.Backend, when, want string) {
	t.Helper()
	st, err := b.Status(t.Context(), "dev")
	if err != nil {
		t.Fatalf("Status (%s): %v", when, err)
	}
	if st.URL != want {
		t.Errorf("status URL (%s) = %q, want %q", when, st.URL, want)
	}
	if !st.Healthy {
		t.Errorf("status (%s) not healthy: %s", when, st.Message)
	}
}

// servesHTTPRoutes asks the API server's discovery for HTTPRoutes.
func servesHTTPRoutes(t *testing.T, cs kubernetes.Interface) bool {
	t.Helper()
	list, err := cs.Discovery().ServerResourcesForGroupVersion(httpRouteGVR.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatalf("discovery of %s: %v", httpRouteGVR.GroupVersion(), err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == httpRouteGVR.Resource })
}

// installGatewayAPI applies the standard channel's CRDs from the
// gateway-api module (downloaded through the Go module proxy into the
// module cache) and waits until the API server serves HTTPRoutes.
func installGatewayAPI(ctx context.Context, t *testing.T, cs kubernetes.Interface, dyn dynamic.Interface) {
	t.Helper()
	goBin := testenv.LookPath(t, "go")
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", gatewayAPIModule)
	cmd.Dir = t.TempDir() // outside slipway's module: its go.sum stays as it is
	out, err := cmd.Output()
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("the Gateway API CRDs (go mod download %s: %v)", gatewayAPIModule, err))
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		testenv.Missing(t, fmt.Sprintf("the Gateway API CRDs (go mod download %s: %s %v)", gatewayAPIModule, mod.Error, err))
	}
	files, err := filepath.Glob(filepath.Join(mod.Dir, "config", "crd", "standard", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s/config/crd/standard: %v", mod.Dir, err)
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(data, &obj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if _, err := dyn.Resource(crdGVR).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "slipway-test", Force: true}); err != nil {
			t.Fatalf("apply CRD %s: %v", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	t.Logf("installed the Gateway API CRDs of %s: %s", gatewayAPIModule, strings.Join(names, ", "))

	// Established means the API server serves the kind; its discovery
	// document, which slipway asks, follows a moment later.
	name := httpRouteGVR.Resource + "." + httpRouteGVR.Group
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w, err := dyn.Resource(crdGVR).Watch(wctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		t.Fatalf("watch CRD %s: %v", name, err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				waitDiscovery(wctx, t, cs)
				return
			}
		}
	}
	t.Fatalf("CRD %s not established within a minute", name)
}

// waitDiscovery asks discovery for HTTPRoutes until it lists them: there is
// no watch for it.
func waitDiscovery(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !servesHTTPRoutes(t, cs) {
		select {
		case <-ctx.Done():
			t.Fatalf("discovery does not list HTTPRoutes although their CRD is established: %v", ctx.Err())
		case <-tick.C:
		}
	}
}
