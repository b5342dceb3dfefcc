package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"slipway.dev/slipway/internal/config"
)

// The Gateway API group and version slipway applies HTTPRoutes with.
const (
	gatewayGroup   = "gateway.networking.k8s.io"
	gatewayVersion = "v1"
)

// ErrNoGatewayAPI is returned by Apply for an environment with an
// httpRoute when the cluster has no HTTPRoute API: the Gateway API CRDs
// are not installed.
var ErrNoGatewayAPI = errors.New("the cluster has no HTTPRoute API (" + gatewayGroup + "/" + gatewayVersion + "): install the Gateway API CRDs " +
	"(standard channel, e.g. config/crd/standard of sigs.k8s.io/gateway-api, or its release's standard-install.yaml) " +
	"and a Gateway controller, or configure kubernetes.ingress instead of kubernetes.httpRoute")

// service is the environment's Service: port 80 to the container's http
// port, of the configured type.
func service(meta metav1.ObjectMeta, selector map[string]string, s config.Service) *corev1.Service {
	meta.Annotations = maps.Clone(s.Annotations)
	port := corev1.ServicePort{Name: portName, Port: 80, TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP}
	typ := corev1.ServiceType(s.TypeOrDefault())
	if typ != corev1.ServiceTypeClusterIP {
		port.NodePort = int32(s.NodePort)
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta,
		Spec:       corev1.ServiceSpec{Type: typ, Selector: selector, Ports: []corev1.ServicePort{port}},
	}
}

// ingress routes the configured hosts and path to the Service named svc.
func ingress(meta metav1.ObjectMeta, svc string, in config.Ingress) *networkingv1.Ingress {
	meta.Annotations = maps.Clone(in.Annotations)
	if cm := in.CertManager; cm.Enabled() {
		if meta.Annotations == nil {
			meta.Annotations = map[string]string{}
		}
		if cm.ClusterIssuer != "" {
			meta.Annotations[config.CertManagerClusterIssuer] = cm.ClusterIssuer
		} else {
			meta.Annotations[config.CertManagerIssuer] = cm.Issuer
		}
	}
	prefix := networkingv1.PathTypePrefix
	value := networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{
			Path:     pathOrRoot(in.Path),
			PathType: &prefix,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: svc, Port: networkingv1.ServiceBackendPort{Name: portName},
			}},
		}},
	}}
	var rules []networkingv1.IngressRule
	for _, h := range in.Hosts {
		rules = append(rules, networkingv1.IngressRule{Host: h, IngressRuleValue: value})
	}
	if len(rules) == 0 {
		rules = []networkingv1.IngressRule{{IngressRuleValue: value}}
	}
	ing := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: meta,
		Spec:       networkingv1.IngressSpec{Rules: rules},
	}
	if in.ClassName != "" {
		ing.Spec.IngressClassName = ptr(in.ClassName)
	}
	if in.TLSSecret != "" {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: in.Hosts, SecretName: in.TLSSecret}}
	}
	return ing
}

// httpRoute attaches a Gateway API HTTPRoute for the configured hostnames
// and path to the Gateway, sending to port 80 of the Service named svc.
// It is built as plain JSON: slipway carries no Gateway API types.
func httpRoute(meta metav1.ObjectMeta, svc string, r config.HTTPRoute) map[string]any {
	md := map[string]any{"name": meta.Name, "namespace": meta.Namespace, "labels": toAny(meta.Labels)}
	if len(r.Annotations) > 0 {
		md["annotations"] = toAny(r.Annotations)
	}
	parent := map[string]any{"group": gatewayGroup, "kind": "Gateway", "name": r.Gateway.Name}
	if r.Gateway.Namespace != "" {
		parent["namespace"] = r.Gateway.Namespace
	}
	if r.Gateway.SectionName != "" {
		parent["sectionName"] = r.Gateway.SectionName
	}
	spec := map[string]any{
		"parentRefs": []any{parent},
		"rules": []any{map[string]any{
			"matches":     []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": pathOrRoot(r.Path)}}},
			"backendRefs": []any{map[string]any{"name": svc, "port": 80}},
		}},
	}
	if len(r.Hostnames) > 0 {
		hosts := make([]any, len(r.Hostnames))
		for i, h := range r.Hostnames {
			hosts[i] = h
		}
		spec["hostnames"] = hosts
	}
	return map[string]any{
		"apiVersion": gatewayGroup + "/" + gatewayVersion,
		"kind":       "HTTPRoute",
		"metadata":   md,
		"spec":       spec,
	}
}

func pathOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// gatewayClient is a REST client for the Gateway API group, which
// client-go has no typed client for: slipway sends and reads its objects
// as plain JSON.
func gatewayClient(rc *rest.Config) (rest.Interface, error) {
	c := dynamic.ConfigFor(rc)
	c.GroupVersion = &schema.GroupVersion{Group: gatewayGroup, Version: gatewayVersion}
	c.APIPath = "/apis"
	gw, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s/%s: %w", gatewayGroup, gatewayVersion, err)
	}
	return gw, nil
}

// checkGatewayAPI asks the API server whether it serves HTTPRoutes; an
// error wrapping ErrNoGatewayAPI when it does not.
func (b *Backend) checkGatewayAPI(ctx context.Context) error {
	gv := gatewayGroup + "/" + gatewayVersion
	res := b.cs.Discovery().RESTClient().Get().AbsPath("/apis", gv).Do(ctx)
	raw, err := res.Raw()
	if serr := res.Error(); err != nil && serr != nil {
		err = serr // the API server's Status, as in apply
	}
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("apply HTTPRoute: %w", ErrNoGatewayAPI)
	}
	if err != nil {
		return fmt.Errorf("apply HTTPRoute: ask the API server for %s: %w", gv, err)
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("apply HTTPRoute: ask the API server for %s: %w", gv, err)
	}
	for _, r := range list.APIResources {
		if r.Name == "httproutes" {
			return nil
		}
	}
	return fmt.Errorf("apply HTTPRoute: %w", ErrNoGatewayAPI)
}

// route is what says where an HTTPRoute is reached: its host names and
// the path of its first match.
type route struct {
	Hostnames []string
	Path      string
}

// routeOf reads an HTTPRoute's JSON.
func routeOf(raw []byte) (*route, error) {
	var r struct {
		Spec struct {
			Hostnames []string `json:"hostnames"`
			Rules     []struct {
				Matches []struct {
					Path *struct {
						Value string `json:"value"`
					} `json:"path"`
				} `json:"matches"`
			} `json:"rules"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	out := &route{Hostnames: r.Spec.Hostnames}
	if rs := r.Spec.Rules; len(rs) > 0 && len(rs[0].Matches) > 0 && rs[0].Matches[0].Path != nil {
		out.Path = rs[0].Matches[0].Path.Value
	}
	return out, nil
}

// configuredURL is where the environment's Ingress or HTTPRoute, as
// configured, is reached; "" when neither names a host.
func configuredURL(k config.EnvKubernetes) string {
	switch {
	case k.Ingress.Enabled():
		return urlOf(nil, ingress(metav1.ObjectMeta{}, "", k.Ingress), nil, nil)
	case k.HTTPRoute.Enabled():
		return urlOf(nil, nil, &route{Hostnames: k.HTTPRoute.Hostnames, Path: pathOrRoot(k.HTTPRoute.Path)}, nil)
	}
	return ""
}

// trafficURL reads the environment's Service and its Ingress or HTTPRoute
// (those the Deployment says were applied with it) and says where the
// environment is reached from outside the cluster; "" when nowhere but
// the cluster's DNS.
func (b *Backend) trafficURL(ctx context.Context, d *appsv1.Deployment, pods []corev1.Pod) (string, error) {
	ns, name := d.Namespace, d.Name
	svc, err := b.cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc = nil
	} else if err != nil {
		return "", fmt.Errorf("read service %s/%s: %w", ns, name, err)
	}
	var ing *networkingv1.Ingress
	var rt *route
	for kind := range strings.SplitSeq(d.Annotations[AnnotationObjects], ",") {
		switch kind {
		case "Ingress":
			ing, err = b.cs.NetworkingV1().Ingresses(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				ing, err = nil, nil
			}
		case "HTTPRoute":
			t := b.client["HTTPRoute"]
			var raw []byte
			raw, err = t.c.Get().Namespace(ns).Resource(t.resource).Name(name).Do(ctx).Raw()
			if err == nil {
				rt, err = routeOf(raw)
			} else if apierrors.IsNotFound(err) {
				err = nil
			}
		}
		if err != nil {
			return "", fmt.Errorf("read %s %s/%s: %w", kind, ns, name, err)
		}
	}
	return urlOf(svc, ing, rt, pods), nil
}

// urlOf says where an environment is reached, the first that applies:
// the host of its Ingress (https when the Ingress has TLS for it) or
// HTTPRoute, the address its Ingress's controller or its LoadBalancer
// Service was given, or its node port on the node of one of its pods.
// Wildcard hosts name no one URL and are passed over.
func urlOf(svc *corev1.Service, ing *networkingv1.Ingress, rt *route, pods []corev1.Pod) string {
	if ing != nil {
		for _, r := range ing.Spec.Rules {
			if r.Host == "" || strings.HasPrefix(r.Host, "*") {
				continue
			}
			scheme := "http"
			for _, t := range ing.Spec.TLS {
				if slices.Contains(t.Hosts, r.Host) {
					scheme = "https"
				}
			}
			return scheme + "://" + r.Host + ingressPath(r)
		}
		if len(ing.Spec.Rules) > 0 && ing.Spec.Rules[0].Host == "" {
			if addr := lbAddress(ing.Status.LoadBalancer.Ingress); addr != "" {
				return "http://" + addr + ingressPath(ing.Spec.Rules[0])
			}
		}
	}
	if rt != nil {
		for _, h := range rt.Hostnames {
			if !strings.HasPrefix(h, "*") {
				return "http://" + h + trimRoot(rt.Path)
			}
		}
	}
	if svc == nil {
		return ""
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		var lb []networkingv1.IngressLoadBalancerIngress
		for _, i := range svc.Status.LoadBalancer.Ingress {
			lb = append(lb, networkingv1.IngressLoadBalancerIngress{IP: i.IP, Hostname: i.Hostname})
		}
		if addr := lbAddress(lb); addr != "" {
			return "http://" + addr
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		port := int32(0)
		for _, p := range svc.Spec.Ports {
			if p.Name == portName {
				port = p.NodePort
			}
		}
		if port == 0 {
			return ""
		}
		for _, p := range pods {
			if p.Status.HostIP != "" && p.DeletionTimestamp == nil {
				return "http://" + net.JoinHostPort(p.Status.HostIP, strconv.Itoa(int(port)))
			}
		}
	}
	return ""
}

func lbAddress(lb []networkingv1.IngressLoadBalancerIngress) string {
	for _, i := range lb {
		switch {
		case i.Hostname != "":
			return i.Hostname
		case i.IP != "":
			if strings.Contains(i.IP, ":") {
				return "[" + i.IP + "]"
			}
			return i.IP
		}
	}
	return ""
}

func ingressPath(r networkingv1.IngressRule) string {
	if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
		return ""
	}
	return trimRoot(r.HTTP.Paths[0].Path)
}

// trimRoot drops a path that is only "/", so that URLs read as before.
func trimRoot(p string) string {
	if p == "/" {
		return ""
	}
	return p
}
