package config

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
)

// dnsSubdomain is a Kubernetes object name such as a Secret's or an
// IngressClass's, and the shape of a host name.
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// annotationKey is a Kubernetes annotation key: an optional DNS prefix and
// a slash, then a name of up to 63 characters.
var annotationKey = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// Annotations cert-manager reads on an Ingress.
const (
	CertManagerClusterIssuer = "cert-manager.io/cluster-issuer"
	CertManagerIssuer        = "cert-manager.io/issuer"
)

// traffic checks how each environment is reached on Kubernetes: its
// Service, and its Ingress or HTTPRoute; and that no two environments ask
// for the same node port, which is the whole cluster's.
func (v *validator) traffic(envs []Environment) {
	nodePorts := map[int]string{}
	for i, e := range envs {
		p := fmt.Sprintf("environments[%d].kubernetes", i)
		k := e.Kubernetes
		v.service(p+".service", k.Service)
		if n := k.Service.NodePort; n != 0 {
			if other, dup := nodePorts[n]; dup {
				v.add(p+".service.nodePort", "%d is already the node port of environment %q, and a node port is the whole cluster's: give each environment its own, or leave it out", n, other)
			} else {
				nodePorts[n] = e.Name
			}
		}
		if k.Ingress.Enabled() && k.HTTPRoute.Enabled() {
			v.add(p, "sets both ingress and httpRoute: the environment's traffic comes through one of them; remove the other")
		}
		if v.written(p+".ingress") || k.Ingress.Enabled() {
			v.ingress(p+".ingress", k.Ingress)
		}
		if v.written(p+".httpRoute") || k.HTTPRoute.Enabled() {
			v.httpRoute(p+".httpRoute", k.HTTPRoute)
		}
	}
}

// written reports whether field was written in the file parsed.
func (v *validator) written(field string) bool {
	_, ok := v.c.pos[field]
	return ok
}

func (v *validator) service(p string, s Service) {
	switch s.Type {
	case "", ServiceClusterIP, ServiceNodePort, ServiceLoadBalancer:
	default:
		v.add(p+".type", "%q is not a Service type: use ClusterIP (inside the cluster, the default), NodePort or LoadBalancer", s.Type)
	}
	switch n := s.NodePort; {
	case n == 0:
	case s.TypeOrDefault() == ServiceClusterIP:
		v.add(p+".nodePort", "applies only to a Service of type NodePort or LoadBalancer: set type: NodePort, or remove nodePort")
	case n < MinNodePort || n > MaxNodePort:
		v.add(p+".nodePort", "%d is outside the node-port range %d-%d: pick a port inside it, or leave nodePort out and the cluster picks one", n, MinNodePort, MaxNodePort)
	}
	v.annotations(p+".annotations", s.Annotations)
}

func (v *validator) ingress(p string, in Ingress) {
	if !in.Enabled() {
		v.add(p, "is empty: give at least hosts, such as hosts: [app.example.com], or remove ingress")
		return
	}
	if in.ClassName != "" && !dnsSubdomain.MatchString(in.ClassName) {
		v.add(p+".className", "%q is not an IngressClass name: lowercase letters, digits, dashes and dots, such as nginx", in.ClassName)
	}
	v.hosts(p+".hosts", in.Hosts)
	v.path(p+".path", in.Path)
	if in.TLSSecret != "" {
		if !dnsSubdomain.MatchString(in.TLSSecret) || len(in.TLSSecret) > 253 {
			v.add(p+".tlsSecret", "%q is not a Secret name: lowercase letters, digits, dashes and dots, such as birthday-app-tls", in.TLSSecret)
		}
		if len(in.Hosts) == 0 {
			v.add(p+".tlsSecret", "needs the host names the certificate is for: set hosts, such as hosts: [app.example.com]")
		}
	}
	if cm := in.CertManager; cm.Enabled() {
		switch {
		case cm.ClusterIssuer != "" && cm.Issuer != "":
			v.add(p+".certManager", "sets both clusterIssuer and issuer: keep one")
		case cm.ClusterIssuer != "" && !dnsSubdomain.MatchString(cm.ClusterIssuer):
			v.add(p+".certManager.clusterIssuer", "%q is not a ClusterIssuer name, such as letsencrypt-prod", cm.ClusterIssuer)
		case cm.Issuer != "" && !dnsSubdomain.MatchString(cm.Issuer):
			v.add(p+".certManager.issuer", "%q is not an Issuer name, such as letsencrypt", cm.Issuer)
		}
		if in.TLSSecret == "" {
			v.add(p+".certManager", "cert-manager writes the certificate into the Secret named by tlsSecret: set tlsSecret, such as tlsSecret: birthday-app-tls")
		}
		for _, key := range []string{CertManagerClusterIssuer, CertManagerIssuer} {
			if _, ok := in.Annotations[key]; ok {
				v.add(p+".annotations."+key, "is what certManager writes: set the issuer in certManager only")
			}
		}
	}
	v.annotations(p+".annotations", in.Annotations)
}

func (v *validator) httpRoute(p string, r HTTPRoute) {
	if !r.Enabled() {
		v.add(p, "is empty: name the Gateway to attach to, such as gateway: {name: public, namespace: gateway}, or remove httpRoute")
		return
	}
	g := r.Gateway
	switch {
	case g.Name == "":
		v.add(p+".gateway.name", "is required: the Gateway the route attaches to, such as gateway: {name: public, namespace: gateway}")
	case !dnsSubdomain.MatchString(g.Name):
		v.add(p+".gateway.name", "%q is not a Gateway name: lowercase letters, digits, dashes and dots", g.Name)
	}
	if g.Namespace != "" && !namespaceName.MatchString(g.Namespace) {
		v.add(p+".gateway.namespace", "%q is not a namespace name: lowercase letters, digits and dashes", g.Namespace)
	}
	if g.SectionName != "" && (!dnsSubdomain.MatchString(g.SectionName) || len(g.SectionName) > 253) {
		v.add(p+".gateway.sectionName", "%q is not a listener name: lowercase letters, digits, dashes and dots, such as https", g.SectionName)
	}
	v.hosts(p+".hostnames", r.Hostnames)
	v.path(p+".path", r.Path)
	v.annotations(p+".annotations", r.Annotations)
}

// hosts checks host names an Ingress or HTTPRoute matches: DNS names,
// each optionally starting with a "*." wildcard label.
func (v *validator) hosts(p string, hosts []string) {
	seen := map[string]bool{}
	for i, h := range hosts {
		f := fmt.Sprintf("%s[%d]", p, i)
		name := strings.TrimPrefix(h, "*.")
		switch {
		case net.ParseIP(h) != nil:
			v.add(f, "%q is an IP address: routes match host names, such as app.example.com; reach an address through service.type: LoadBalancer", h)
		case len(h) > 253 || !dnsSubdomain.MatchString(name):
			v.add(f, "%q is not a host name: lowercase letters, digits, dashes and dots, such as app.example.com (a leading *. matches any one label)", h)
		case seen[h]:
			v.add(f, "%q is listed twice: keep one", h)
		}
		seen[h] = true
	}
}

func (v *validator) path(p, path string) {
	if path != "" && (!strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\n?#")) {
		v.add(p, "%q is not a path prefix: start with /, without spaces, ? or #, such as /api", path)
	}
}

func (v *validator) annotations(p string, m map[string]string) {
	for _, key := range slices.Sorted(maps.Keys(m)) {
		if !annotationKey.MatchString(key) || len(key) > 253+1+63 {
			v.add(p+"."+key, "%q is not an annotation key: a name of letters, digits, -, _ and . with an optional DNS prefix and /, such as example.com/setting", key)
		}
	}
}
