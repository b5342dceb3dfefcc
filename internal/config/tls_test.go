package config

import (
	"strings"
	"testing"
)

// TestTLSErrors checks each mistake in frontend.tls is reported with its
// field and the fix.
func TestTLSErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\nenvironments:\n  - name: dev\n  - name: prod\n    frontend:\n      tls:\n"
	tests := []parseErrorCase{
		{"cert without key", head + "        certFile: /etc/tls/cert.pem\n",
			[]string{`f.yaml:8: environments[1].frontend.tls.keyFile: is required with certFile: the PEM file of the certificate's private key`}},
		{"key without cert", head + "        keyFile: /etc/tls/key.pem\n",
			[]string{`f.yaml:8: environments[1].frontend.tls.certFile: is required with keyFile: the PEM file of the certificate chain, leaf first`}},
		{"files and acme", head + "        certFile: c.pem\n        keyFile: k.pem\n        acme:\n          domains: [app.example.com]\n",
			[]string{`f.yaml:11: environments[1].frontend.tls.acme: is set together with certFile/keyFile: use either certificate files or ACME, and remove the other`}},
		{"acme without domains", head + "        acme:\n          email: ops@example.com\n",
			[]string{`f.yaml:9: environments[1].frontend.tls.acme.domains: is required to use ACME: the names to get a certificate for, such as domains: [app.example.com]`}},
		{"bad domains", head + "        acme:\n          domains: ['*.example.com', 192.0.2.1, localhost, a.example.com, A.example.com]\n",
			[]string{
				`f.yaml:10: environments[1].frontend.tls.acme.domains[0]: "*.example.com" is a wildcard: HTTP-01 and TLS-ALPN-01 cannot validate wildcards; list each name, or use certFile/keyFile`,
				`f.yaml:10: environments[1].frontend.tls.acme.domains[1]: "192.0.2.1" is an IP address: ACME certificates here are for DNS names, such as app.example.com`,
				`f.yaml:10: environments[1].frontend.tls.acme.domains[2]: "localhost" is not a DNS name with a dot, such as app.example.com`,
				`f.yaml:10: environments[1].frontend.tls.acme.domains[4]: "A.example.com" is listed twice: keep one`,
			}},
		{"bad directory and email", head + "        acme:\n          domains: [app.example.com]\n          email: ops at example\n          directory: http://acme.example/dir\n",
			[]string{
				`f.yaml:11: environments[1].frontend.tls.acme.email: "ops at example" is not an email address: write it plainly, such as ops@example.com`,
				`f.yaml:12: environments[1].frontend.tls.acme.directory: "http://acme.example/dir" is not an https:// URL: give the ACME directory, such as https://acme-v02.api.letsencrypt.org/directory (the default)`,
			}},
		{"caFile without directory", head + "        acme:\n          domains: [app.example.com]\n          caFile: /etc/ca.pem\n",
			[]string{`f.yaml:11: environments[1].frontend.tls.acme.caFile: is set without directory: caFile trusts a private ACME server; set directory to that server's URL, or remove caFile`}},
		{"redirect without certificates", head + "        redirectFrom: :80\n",
			[]string{`f.yaml:9: environments[1].frontend.tls.redirectFrom: is set without certificates: add certFile and keyFile, or acme, or remove redirectFrom`}},
		{"redirect from the listen address", head + "        certFile: c.pem\n        keyFile: k.pem\n        redirectFrom: 0.0.0.0:8080\n",
			[]string{`f.yaml:11: environments[1].frontend.tls.redirectFrom: "0.0.0.0:8080" is the listen address, which serves HTTPS: give plain HTTP its own port, such as :80`}},
		{"redirect not an address", head + "        certFile: c.pem\n        keyFile: k.pem\n        redirectFrom: \"80\"\n",
			[]string{`f.yaml:11: environments[1].frontend.tls.redirectFrom: "80" is not an address: use host:port or :port, such as :80`}},
		{"kubernetes runtime", "app: demo\nrepo:\n  url: ./app.git\nruntime: kubernetes\nenvironments:\n  - name: dev\n  - name: prod\n    frontend:\n      tls:\n        certFile: c.pem\n        keyFile: k.pem\n",
			[]string{`f.yaml:9: environments[1].frontend.tls: is for the local runtime's load balancer only: on kubernetes, terminate TLS in front of the Service (an Ingress or a load balancer) and remove frontend.tls`}},
	}
	checkParseErrors(t, tests)
}

func TestTLSAccepted(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\nenvironments:\n  - name: dev\n  - name: prod\n    listen: 0.0.0.0:443\n    frontend:\n      tls:\n"
	tests := []struct {
		name, yaml, url string
		check           func(TLS) string
	}{
		{"files, relative to the configuration", head + "        certFile: tls/cert.pem\n        keyFile: /etc/key.pem\n        redirectFrom: :80\n",
			"https://127.0.0.1", func(t TLS) string {
				if t.CertFile != "/srv/demo/tls/cert.pem" || t.KeyFile != "/etc/key.pem" {
					return "files " + t.CertFile + " " + t.KeyFile
				}
				return ""
			}},
		{"acme", head + "        acme:\n          domains: [app.example.com, www.example.com]\n          email: ops@example.com\n          directory: https://127.0.0.1:14000/dir\n          caFile: ca.pem\n",
			"https://app.example.com", func(t TLS) string {
				if t.ACME.CAFile != "/srv/demo/ca.pem" {
					return "caFile " + t.ACME.CAFile
				}
				return ""
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("/srv/demo/slipway.yaml", strings.NewReader(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			e, _ := c.Environment("prod")
			if msg := tt.check(e.Frontend.TLS); msg != "" {
				t.Error(msg)
			}
			if got := e.EnvironmentURL(); got != tt.url {
				t.Errorf("EnvironmentURL = %q, want %q", got, tt.url)
			}
		})
	}
}
