package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slipway.dev/slipway/internal/config"
)

func TestURLOf(t *testing.T) {
	sel := map[string]string{LabelInstance: "a-dev"}
	meta := metav1.ObjectMeta{Name: "a", Namespace: "a-dev"}
	svc := func(s config.Service, lb ...corev1.LoadBalancerIngress) *corev1.Service {
		out := service(meta, sel, s)
		if out.Spec.Type != corev1.ServiceTypeClusterIP && out.Spec.Ports[0].NodePort == 0 {
			out.Spec.Ports[0].NodePort = 31234 // as the cluster allocates it
		}
		out.Status.LoadBalancer.Ingress = lb
		return out
	}
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "a-1"}}, // not scheduled yet
		{ObjectMeta: metav1.ObjectMeta{Name: "a-2"}, Status: corev1.PodStatus{HostIP: "10.0.0.7"}},
	}
	ing := func(in config.Ingress, lb ...networkingv1.IngressLoadBalancerIngress) *networkingv1.Ingress {
		out := ingress(meta, "a", in)
		out.Status.LoadBalancer.Ingress = lb
		return out
	}
	clusterIP := svc(config.Service{})
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		ing  *networkingv1.Ingress
		rt   *route
		want string
	}{
		{"ClusterIP only", clusterIP, nil, nil, ""},
		{"no service", nil, nil, nil, ""},
		{"ingress host", clusterIP, ing(config.Ingress{Hosts: []string{"a.example.com"}}), nil, "http://a.example.com"},
		{"ingress with TLS and a path", clusterIP,
			ing(config.Ingress{Hosts: []string{"*.example.com", "a.example.com"}, Path: "/app", TLSSecret: "a-tls"}), nil, "https://a.example.com/app"},
		{"ingress without host, address not yet given", clusterIP, ing(config.Ingress{ClassName: "nginx"}), nil, ""},
		{"ingress without host, address given", clusterIP,
			ing(config.Ingress{ClassName: "nginx"}, networkingv1.IngressLoadBalancerIngress{IP: "203.0.113.9"}), nil, "http://203.0.113.9"},
		{"only a wildcard host falls through to the node port", svc(config.Service{Type: "NodePort"}),
			ing(config.Ingress{Hosts: []string{"*.example.com"}}), nil, "http://10.0.0.7:31234"},
		{"HTTPRoute hostname", clusterIP, nil, &route{Hostnames: []string{"a.example.com"}, Path: "/"}, "http://a.example.com"},
		{"HTTPRoute without hostnames", clusterIP, nil, &route{Path: "/"}, ""},
		{"load balancer pending uses the node port", svc(config.Service{Type: "LoadBalancer"}), nil, nil, "http://10.0.0.7:31234"},
		{"load balancer IP", svc(config.Service{Type: "LoadBalancer"}, corev1.LoadBalancerIngress{IP: "198.51.100.4"}), nil, nil, "http://198.51.100.4"},
		{"load balancer IPv6", svc(config.Service{Type: "LoadBalancer"}, corev1.LoadBalancerIngress{IP: "2001:db8::4"}), nil, nil, "http://[2001:db8::4]"},
		{"load balancer hostname", svc(config.Service{Type: "LoadBalancer"}, corev1.LoadBalancerIngress{Hostname: "lb.example.net"}), nil, nil, "http://lb.example.net"},
		{"fixed node port", svc(config.Service{Type: "NodePort", NodePort: 30080}), nil, nil, "http://10.0.0.7:30080"},
	} {
		if got := urlOf(tc.svc, tc.ing, tc.rt, pods); got != tc.want {
			t.Errorf("%s: urlOf = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := urlOf(svc(config.Service{Type: "NodePort"}), nil, nil, pods[:1]); got != "" {
		t.Errorf("node port without a scheduled pod: urlOf = %q, want \"\" (no node to name)", got)
	}
}

func TestURLFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.App = "birthday-app"
	cfg.Environments[0].Kubernetes.Ingress = config.Ingress{Hosts: []string{"dev.example.com"}, TLSSecret: "dev-tls", Path: "/birthday"}
	cfg.Environments[1].Kubernetes.HTTPRoute = config.HTTPRoute{Gateway: config.GatewayRef{Name: "public"}, Hostnames: []string{"birthday.example.com"}}
	qa := config.DefaultEnvironment("qa")
	qa.Kubernetes.Service.Type = config.ServiceLoadBalancer
	cfg.Environments = append(cfg.Environments, qa)
	for env, want := range map[string]string{
		"dev":  "https://dev.example.com/birthday",
		"prod": "http://birthday.example.com",
		"qa":   "http://birthday-app.birthday-app-qa.svc.cluster.local", // the address is the cluster's to give
	} {
		if got, err := URL(cfg, env); err != nil || got != want {
			t.Errorf("URL(%s) = %q, %v; want %q", env, got, err, want)
		}
	}
}
