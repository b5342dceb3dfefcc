package local

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"slipway.dev/slipway/internal/deploy"
)

// newACMEManager returns the certificate manager of an environment that
// gets its certificates by ACME. The account key and the certificates are
// kept in DIR/acme/SERVER (mode 0700, out of the replicas' reach), one
// directory per ACME server so that changing servers starts afresh.
// autocert renews a certificate when a third of its validity is left (at
// most 30 days before it expires), without a restart.
func newACMEManager(dir string, t deploy.TLS) (*autocert.Manager, error) {
	directory := t.ACMEDirectory
	if directory == "" {
		directory = acme.LetsEncryptURL
	}
	u, err := url.Parse(directory)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("load balancer: ACME directory %q is not a URL", directory)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if t.ACMECAFile != "" {
		pem, err := os.ReadFile(t.ACMECAFile)
		if err != nil {
			return nil, fmt.Errorf("load balancer: read the ACME server's CA file: %w (check frontend.tls.acme.caFile)", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("load balancer: %s holds no PEM certificate (check frontend.tls.acme.caFile)", t.ACMECAFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	cache := filepath.Join(dir, "acme", strings.NewReplacer(":", "_", "/", "_").Replace(u.Host))
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return nil, fmt.Errorf("load balancer: create the ACME directory: %w", err)
	}
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(cache),
		HostPolicy: autocert.HostWhitelist(t.ACMEDomains...),
		Email:      t.ACMEEmail,
		Client: &acme.Client{
			DirectoryURL: directory,
			UserAgent:    "slipway",
			HTTPClient:   &http.Client{Transport: transport, Timeout: time.Minute},
		},
	}, nil
}

// prefetch gets each domain's certificate (from the cache, or from the
// ACME server) as soon as the listener serves, rather than in the first
// client's handshake; that also starts its renewals. It asks for ECDSA
// certificates, which every current client accepts.
func prefetch(ctx context.Context, m *autocert.Manager, domains []string, logger *slog.Logger) {
	for _, d := range domains {
		hello := &tls.ClientHelloInfo{
			ServerName:       d,
			CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
			SupportedCurves:  []tls.CurveID{tls.CurveP256},
		}
		start := time.Now()
		cert, err := m.GetCertificate(hello)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			logger.Warn("ACME certificate not obtained; clients' handshakes will try again", "domain", d, "err", err)
			continue
		}
		logger.Info("ACME certificate ready", "domain", d, "expires", expiry(cert), "took", time.Since(start).Round(time.Millisecond))
	}
}

// fileCerts serves a certificate from PEM files and reads them again when
// they change (checked at most once a second, at a handshake). A change
// that does not load (a key not yet written next to its new certificate)
// keeps the previous certificate until the files are whole.
type fileCerts struct {
	certFile, keyFile string
	logger            *slog.Logger

	cert      atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // unix nanoseconds

	checking sync.Mutex // one reload at a time; guards stamp
	stamp    string
}

func loadFileCerts(certFile, keyFile string, logger *slog.Logger) (*fileCerts, error) {
	f := &fileCerts{certFile: certFile, keyFile: keyFile, logger: logger}
	stamp, err := f.stat()
	if err == nil {
		err = f.load()
	}
	if err != nil {
		return nil, fmt.Errorf("load balancer: certificate: %w (check frontend.tls.certFile and keyFile)", err)
	}
	f.stamp = stamp
	f.nextCheck.Store(time.Now().Add(time.Second).UnixNano())
	return f, nil
}

func (f *fileCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if now := time.Now().UnixNano(); now >= f.nextCheck.Load() && f.checking.TryLock() {
		f.nextCheck.Store(now + int64(time.Second))
		f.reload()
		f.checking.Unlock()
	}
	return f.cert.Load(), nil
}

// reload loads the files again if they changed; f.checking is held.
func (f *fileCerts) reload() {
	stamp, err := f.stat()
	if err != nil || stamp == f.stamp {
		return
	}
	if err := f.load(); err != nil {
		f.logger.Warn("certificate files changed but do not load; serving the previous certificate", "err", err)
		return
	}
	f.stamp = stamp
	f.logger.Info("certificate reloaded", "file", f.certFile, "expires", expiry(f.cert.Load()))
}

func (f *fileCerts) load() error {
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return err
	}
	f.cert.Store(&c)
	return nil
}

// stat is what changes when either file is replaced or rewritten.
func (f *fileCerts) stat() (string, error) {
	var b strings.Builder
	for _, name := range []string{f.certFile, f.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d.%d.", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

// expiry is when c's leaf certificate expires; zero if it is not parsed.
func expiry(c *tls.Certificate) time.Time {
	if c == nil || c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}
