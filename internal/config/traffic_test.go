package config

import (
	"strings"
	"testing"
)

// TestTrafficErrors checks what Validate says about an environment's
// Service, Ingress and HTTPRoute that cannot work.
func TestTrafficErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\nruntime: kubernetes\nenvironments:\n  - name: dev\n    kubernetes:\n"
	tests := []parseErrorCase{
		{"bad service type", head + "      service:\n        type: External\n",
			[]string{`f.yaml:9: environments[0].kubernetes.service.type: "External" is not a Service type: use ClusterIP (inside the cluster, the default), NodePort or LoadBalancer`}},
		{"node port on ClusterIP", head + "      service:\n        nodePort: 30080\n",
			[]string{`f.yaml:9: environments[0].kubernetes.service.nodePort: applies only to a Service of type NodePort or LoadBalancer: set type: NodePort, or remove nodePort`}},
		{"node port out of range", head + "      service:\n        type: NodePort\n        nodePort: 8080\n",
			[]string{`f.yaml:10: environments[0].kubernetes.service.nodePort: 8080 is outside the node-port range 30000-32767: pick a port inside it, or leave nodePort out and the cluster picks one`}},
		{"node port twice", head + "      service: {type: NodePort, nodePort: 30080}\n  - name: prod\n    kubernetes:\n      service: {type: LoadBalancer, nodePort: 30080}\n",
			[]string{`f.yaml:11: environments[1].kubernetes.service.nodePort: 30080 is already the node port of environment "dev", and a node port is the whole cluster's: give each environment its own, or leave it out`}},
		{"bad annotation key", head + "      service:\n        annotations:\n          \"bad key\": x\n",
			[]string{`f.yaml:10: environments[0].kubernetes.service.annotations.bad key: "bad key" is not an annotation key: a name of letters, digits, -, _ and . with an optional DNS prefix and /, such as example.com/setting`}},
		{"ingress and httpRoute", head + "      ingress:\n        hosts: [a.example.com]\n      httpRoute:\n        gateway: {name: public}\n",
			[]string{`f.yaml:7: environments[0].kubernetes: sets both ingress and httpRoute: the environment's traffic comes through one of them; remove the other`}},
		{"empty ingress", head + "      ingress: {}\n",
			[]string{`f.yaml:8: environments[0].kubernetes.ingress: is empty: give at least hosts, such as hosts: [app.example.com], or remove ingress`}},
		{"ingress TLS without host", head + "      ingress:\n        tlsSecret: demo-tls\n",
			[]string{`f.yaml:9: environments[0].kubernetes.ingress.tlsSecret: needs the host names the certificate is for: set hosts, such as hosts: [app.example.com]`}},
		{"cert-manager without secret", head + "      ingress:\n        hosts: [a.example.com]\n        certManager:\n          clusterIssuer: letsencrypt\n",
			[]string{`f.yaml:10: environments[0].kubernetes.ingress.certManager: cert-manager writes the certificate into the Secret named by tlsSecret: set tlsSecret, such as tlsSecret: birthday-app-tls`}},
		{"cert-manager twice", head + "      ingress:\n        hosts: [a.example.com]\n        tlsSecret: a-tls\n        certManager: {clusterIssuer: le, issuer: le}\n        annotations:\n          cert-manager.io/cluster-issuer: le\n",
			[]string{
				`f.yaml:11: environments[0].kubernetes.ingress.certManager: sets both clusterIssuer and issuer: keep one`,
				`f.yaml:13: environments[0].kubernetes.ingress.annotations.cert-manager.io/cluster-issuer: is what certManager writes: set the issuer in certManager only`,
			}},
		{"bad hosts and path", head + "      ingress:\n        hosts: [10.0.0.1, App.example.com, a.example.com, a.example.com]\n        path: api\n        className: Nginx\n",
			[]string{
				`f.yaml:11: environments[0].kubernetes.ingress.className: "Nginx" is not an IngressClass name: lowercase letters, digits, dashes and dots, such as nginx`,
				`f.yaml:9: environments[0].kubernetes.ingress.hosts[0]: "10.0.0.1" is an IP address: routes match host names, such as app.example.com; reach an address through service.type: LoadBalancer`,
				`f.yaml:9: environments[0].kubernetes.ingress.hosts[1]: "App.example.com" is not a host name: lowercase letters, digits, dashes and dots, such as app.example.com (a leading *. matches any one label)`,
				`f.yaml:9: environments[0].kubernetes.ingress.hosts[3]: "a.example.com" is listed twice: keep one`,
				`f.yaml:10: environments[0].kubernetes.ingress.path: "api" is not a path prefix: start with /, without spaces, ? or #, such as /api`,
			}},
		{"httpRoute without gateway", head + "      httpRoute:\n        hostnames: [a.example.com]\n",
			[]string{`f.yaml:8: environments[0].kubernetes.httpRoute.gateway.name: is required: the Gateway the route attaches to, such as gateway: {name: public, namespace: gateway}`}},
		{"httpRoute bad gateway", head + "      httpRoute:\n        gateway: {name: public, namespace: Infra, sectionName: \"https port\"}\n",
			[]string{
				`f.yaml:9: environments[0].kubernetes.httpRoute.gateway.namespace: "Infra" is not a namespace name: lowercase letters, digits and dashes`,
				`f.yaml:9: environments[0].kubernetes.httpRoute.gateway.sectionName: "https port" is not a listener name: lowercase letters, digits, dashes and dots, such as https`,
			}},
		{"unknown ingress field", head + "      ingress:\n        host: a.example.com\n",
			[]string{`f.yaml:9: environments[0].kubernetes.ingress.host: unknown field "host" in environments[0].kubernetes.ingress; did you mean "hosts"? Known fields: className, hosts, path, tlsSecret, certManager, annotations`}},
	}
	checkParseErrors(t, tests)
}

// TestTrafficValid checks configurations that must pass, with the values
// the documentation shows.
func TestTrafficValid(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\nruntime: kubernetes\nenvironments:\n  - name: dev\n    kubernetes:\n"
	for name, body := range map[string]string{
		"load balancer":        "      service:\n        type: LoadBalancer\n        annotations: {service.beta.kubernetes.io/aws-load-balancer-internal: \"true\"}\n",
		"fixed node port":      "      service: {type: NodePort, nodePort: 32767}\n",
		"ingress for any host": "      ingress: {className: nginx}\n",
		"ingress with cert-manager": "      ingress:\n        hosts: [demo.example.com, \"*.demo.example.com\"]\n        tlsSecret: demo-tls\n" +
			"        certManager: {issuer: letsencrypt}\n",
		"httpRoute": "      httpRoute:\n        gateway: {name: public, namespace: gateway-system, sectionName: https}\n        hostnames: [demo.example.com]\n",
	} {
		c, err := Parse("f.yaml", strings.NewReader(head+body))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := c.Environments[0].Kubernetes.Service.TypeOrDefault(); got == "" {
			t.Errorf("%s: service type is empty", name)
		}
	}
}
