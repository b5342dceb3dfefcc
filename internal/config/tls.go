package config

import (
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// tls checks an environment's frontend.tls: one source of certificates
// (files or ACME), complete, and a redirect address that is not the
// listen address.
func (v *validator) tls(p string, e Environment) {
	t := e.Frontend.TLS
	files := t.CertFile != "" || t.KeyFile != ""
	a := t.ACME
	acmeSet := a.Enabled() || a.Email != "" || a.Directory != "" || a.CAFile != ""
	if !files && !acmeSet && t.RedirectFrom == "" {
		return
	}
	if v.c.Runtime == RuntimeKubernetes {
		v.add(p, "is for the local runtime's load balancer only: on kubernetes, terminate TLS in front of the Service (an Ingress or a load balancer) and remove frontend.tls")
		return
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.add(p+".keyFile", "is required with certFile: the PEM file of the certificate's private key")
	case t.KeyFile != "" && t.CertFile == "":
		v.add(p+".certFile", "is required with keyFile: the PEM file of the certificate chain, leaf first")
	}
	if files && acmeSet {
		v.add(p+".acme", "is set together with certFile/keyFile: use either certificate files or ACME, and remove the other")
	}
	if acmeSet {
		v.acme(p+".acme", a)
	}
	if t.RedirectFrom != "" {
		v.redirectFrom(p+".redirectFrom", t, e.Listen)
	}
}

func (v *validator) acme(p string, a ACME) {
	if len(a.Domains) == 0 {
		v.add(p+".domains", "is required to use ACME: the names to get a certificate for, such as domains: [app.example.com]")
	}
	seen := map[string]bool{}
	for i, d := range a.Domains {
		f := p + ".domains[" + strconv.Itoa(i) + "]"
		switch {
		case strings.HasPrefix(d, "*."):
			v.add(f, "%q is a wildcard: HTTP-01 and TLS-ALPN-01 cannot validate wildcards; list each name, or use certFile/keyFile", d)
		case net.ParseIP(d) != nil:
			v.add(f, "%q is an IP address: ACME certificates here are for DNS names, such as app.example.com", d)
		case !validDomain(d):
			v.add(f, "%q is not a DNS name with a dot, such as app.example.com", d)
		case seen[strings.ToLower(d)]:
			v.add(f, "%q is listed twice: keep one", d)
		}
		seen[strings.ToLower(d)] = true
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			v.add(p+".email", "%q is not an email address: write it plainly, such as ops@example.com", a.Email)
		}
	}
	if a.Directory != "" {
		u, err := url.Parse(a.Directory)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			v.add(p+".directory", "%q is not an https:// URL: give the ACME directory, such as https://acme-v02.api.letsencrypt.org/directory (the default)", a.Directory)
		}
	}
	if a.CAFile != "" && a.Directory == "" {
		v.add(p+".caFile", "is set without directory: caFile trusts a private ACME server; set directory to that server's URL, or remove caFile")
	}
}

func (v *validator) redirectFrom(p string, t TLS, listen string) {
	if !t.Enabled() {
		v.add(p, "is set without certificates: add certFile and keyFile, or acme, or remove redirectFrom")
		return
	}
	host, port, err := net.SplitHostPort(t.RedirectFrom)
	if err != nil {
		v.add(p, "%q is not an address: use host:port or :port, such as :80", t.RedirectFrom)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.add(p, "%q has no valid port: use host:port, such as :80", t.RedirectFrom)
		return
	}
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil || lport != port {
		return
	}
	if host == lhost || unspecifiedHost(host) || unspecifiedHost(lhost) {
		v.add(p, "%q is the listen address, which serves HTTPS: give plain HTTP its own port, such as :80", t.RedirectFrom)
	}
}

func unspecifiedHost(h string) bool {
	if h == "" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

// validDomain reports whether d is a DNS name of at least two labels.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// resolveTLSFiles makes relative certificate, key and CA file names
// relative to the directory of the configuration file, as the supervisor
// that reads them runs elsewhere.
func resolveTLSFiles(file string, c *Config) {
	if file == "" {
		return
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(file), p)
	}
	for i := range c.Environments {
		t := &c.Environments[i].Frontend.TLS
		t.CertFile, t.KeyFile, t.ACME.CAFile = abs(t.CertFile), abs(t.KeyFile), abs(t.ACME.CAFile)
	}
}

// tlsURL is the URL of an environment that serves HTTPS: its first ACME
// domain, or the listen address's host, with the port unless it is 443.
func tlsURL(e Environment, host, port string) string {
	if d := e.Frontend.TLS.ACME.Domains; len(d) > 0 {
		host = d[0]
	}
	if port == "443" {
		return "https://" + host
	}
	return "https://" + net.JoinHostPort(host, port)
}
