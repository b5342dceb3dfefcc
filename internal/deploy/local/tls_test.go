package local

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// testCA is a certificate authority made up for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "slipway test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue writes a certificate for names (DNS names or IP addresses) with
// the given serial number, and its key, to certFile and keyFile.
func (ca *testCA) issue(t testing.TB, certFile, keyFile string, serial int64, names ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed into place, as a certificate tool does.
	for _, f := range []struct {
		name string
		data []byte
	}{
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})},
	} {
		if err := os.WriteFile(f.name+".new", f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.name+".new", f.name); err != nil {
			t.Fatal(err)
		}
	}
}

// logBuffer collects a component's log for a test to show when it fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t testing.TB) *slog.Logger {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("load balancer's log:\n%s", lb)
		}
	})
	return slog.New(slog.NewTextHandler(lb, nil))
}

// protoEcho answers with the request's protocol and whether it came over
// TLS.
var protoEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%s tls=%t %s", r.Proto, r.TLS != nil, r.URL.RequestURI())
})

// serveTestTLS runs a frontend with TLS settings fe.TLS on 127.0.0.1 (at
// port, or a free one when 0) with h, until the test ends.
func serveTestTLS(t testing.TB, port int, fe deploy.Frontend, dir string, h http.Handler) *tlsListener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	fe.HeaderTimeout, fe.IdleTimeout, fe.MaxHeaderBytes = 5*time.Second, time.Minute, 1<<20
	l, err := newTLSListener(ln, fe, dir, testLogger(t), func() {})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	f := newFrontend(l, h, deploy.Frontend{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return l
}

// tlsClient trusts roots and asks for serverName; h2 lets it negotiate
// HTTP/2. Every request opens a new connection.
func tlsClient(roots *x509.CertPool, serverName string, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// getTLS fetches url and returns the answer's body and the serial number
// of the certificate the server presented.
func getTLS(t testing.TB, c *http.Client, url string) (body string, serial string, err error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return "", "", fmt.Errorf("%s: answered without TLS", url)
	}
	return string(b), resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

// TestTLSFiles serves a certificate from files over HTTP/1.1 and HTTP/2,
// picks up a new certificate written over the files without a restart, and
// redirects plain HTTP to HTTPS.
func TestTLSFiles(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, certFile, keyFile, 100, "app.slipway.test", "127.0.0.1")
	redirect, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	l := serveTestTLS(t, 0, deploy.Frontend{TLS: &deploy.TLS{
		CertFile: certFile, KeyFile: keyFile, RedirectFrom: "127.0.0.1:" + strconv.Itoa(redirect),
	}}, dir, protoEcho)
	port := portOf(l.Addr())
	base := "https://app.slipway.test:" + port
	url := "https://127.0.0.1:" + port + "/x?y=1"

	for _, tt := range []struct {
		h2   bool
		want string
	}{{false, "HTTP/1.1 tls=true /x?y=1"}, {true, "HTTP/2.0 tls=true /x?y=1"}} {
		body, serial, err := getTLS(t, tlsClient(ca.pool(), "app.slipway.test", tt.h2), url)
		if err != nil {
			t.Fatalf("h2=%t: %v", tt.h2, err)
		}
		if body != tt.want || serial != "100" {
			t.Errorf("h2=%t: got %q from certificate %s, want %q from 100", tt.h2, body, serial, tt.want)
		}
	}

	// A new certificate in the same files is served without a restart.
	ca.issue(t, certFile, keyFile, 101, "app.slipway.test")
	c := tlsClient(ca.pool(), "app.slipway.test", true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, serial, err := getTLS(t, c, url)
		if err != nil {
			t.Fatal(err)
		}
		if serial == "101" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving certificate %s 10s after the files changed, want 101", serial)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Files that do not load keep the certificate in use.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the once-a-second check
	if _, serial, err := getTLS(t, c, url); err != nil || serial != "101" {
		t.Errorf("after a broken key file: certificate %s, err %v; want 101 still served", serial, err)
	}

	// Plain HTTP: a 308 to the same URL over HTTPS, the method kept.
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "http://127.0.0.1:"+strconv.Itoa(redirect)+"/a/b?c=d", strings.NewReader("body"))
		req.Host = "app.slipway.test"
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || loc != base+"/a/b?c=d" {
			t.Errorf("%s over plain HTTP: %s to %q, want 308 to %q", method, resp.Status, loc, base+"/a/b?c=d")
		}
	}
}

// TestTLSHandshakeTimeout checks that a client that connects and sends
// nothing is dropped after the header timeout, and holds up no one else.
func TestTLSHandshakeTimeout(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, certFile, keyFile, 7, "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := newTLSListener(ln, deploy.Frontend{HeaderTimeout: 300 * time.Millisecond, TLS: &deploy.TLS{CertFile: certFile, KeyFile: keyFile}}, dir, testLogger(t), func() {})
	if err != nil {
		t.Fatal(err)
	}
	f := newFrontend(l, protoEcho, deploy.Frontend{})
	defer f.Shutdown(context.Background())

	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if _, _, err := getTLS(t, tlsClient(ca.pool(), "127.0.0.1", false), "https://"+l.Addr().String()+"/"); err != nil {
		t.Fatalf("a client behind a silent one: %v", err)
	}
	// The header timeout is 300ms; a server without one would keep the
	// connection until the deadline.
	silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent client: read %v, want EOF (closed by the server)", err)
	}
}

// TestTLSBackend deploys replicas behind a load balancer that serves
// certificate files: HTTP/2 and HTTP/1.1 clients reach the replicas, which
// see X-Forwarded-Proto: https; status gives the https URL; applying the
// spec without TLS serves plain HTTP again.
func TestTLSBackend(t *testing.T) {
	t.Parallel()
	v1r, _, _ := fixtureReleases(t)
	ca := newTestCA(t)
	certDir := t.TempDir()
	certFile, keyFile := filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem")
	ca.issue(t, certFile, keyFile, 42, "127.0.0.1")
	redirect, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("secure")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 2
	spec.Frontend.TLS = &deploy.TLS{CertFile: certFile, KeyFile: keyFile, RedirectFrom: "127.0.0.1:" + strconv.Itoa(redirect)}
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := b.Status(t.Context(), "secure")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.URL, "https://127.0.0.1:") {
		t.Fatalf("URL = %q, want https://127.0.0.1:PORT", st.URL)
	}
	for _, h2 := range []bool{true, false} {
		resp, err := tlsClient(ca.pool(), "127.0.0.1", h2).Get(st.URL + "/headers")
		if err != nil {
			t.Fatalf("h2=%t: %v", h2, err)
		}
		var got http.Header
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("h2=%t: %v", h2, err)
		}
		wantProto := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
		if resp.Proto != wantProto || got.Get("X-Forwarded-Proto") != "https" || resp.Header.Get("Slipway-Environment") != "secure" {
			t.Errorf("h2=%t: %s, replica saw X-Forwarded-Proto %q, Slipway-Environment %q; want %s, https, secure",
				h2, resp.Proto, got.Get("X-Forwarded-Proto"), resp.Header.Get("Slipway-Environment"), wantProto)
		}
	}
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Get("http://127.0.0.1:" + strconv.Itoa(redirect) + "/headers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || loc != st.URL+"/headers" {
		t.Errorf("plain HTTP: %s to %q, want 308 to %s/headers", resp.Status, loc, st.URL)
	}

	// A certificate that does not load fails the apply and leaves the
	// listener serving.
	broken := spec
	broken.Frontend.TLS = &deploy.TLS{CertFile: filepath.Join(certDir, "missing.pem"), KeyFile: keyFile}
	if err := b.Apply(t.Context(), broken); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("Apply with a missing certificate file: %v, want an error naming it", err)
	}
	if _, _, err := getTLS(t, tlsClient(ca.pool(), "127.0.0.1", true), st.URL+"/"); err != nil {
		t.Errorf("after a failed apply: %v", err)
	}

	// Another listen address, the same redirect address: the old
	// redirect listener lets go of it for the new one.
	newPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	spec.ListenAddr = "127.0.0.1:" + strconv.Itoa(newPort)
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply on another address: %v", err)
	}
	resp, err = plain.Get("http://127.0.0.1:" + strconv.Itoa(redirect) + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://127.0.0.1:" + strconv.Itoa(newPort) + "/x"; resp.Header.Get("Location") != want {
		t.Errorf("after moving: redirect to %q, want %q", resp.Header.Get("Location"), want)
	}
	if _, _, err := getTLS(t, tlsClient(ca.pool(), "127.0.0.1", true), "https://127.0.0.1:"+strconv.Itoa(newPort)+"/"); err != nil {
		t.Errorf("after moving: %v", err)
	}

	spec.Frontend.TLS = nil
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply without TLS: %v", err)
	}
	if st, err = b.Status(t.Context(), "secure"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.URL, "http://") {
		t.Fatalf("URL without TLS = %q, want http://", st.URL)
	}
	if resp, _ := httpGet(t, st.URL+"/headers"); resp.StatusCode != http.StatusOK {
		t.Errorf("plain HTTP after TLS was removed: %s", resp.Status)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(redirect), time.Second); err == nil {
		c.Close()
		t.Errorf("the redirect listener still accepts after TLS was removed")
	}
}

// TestTLSShutdownHTTP2 checks that shutting the frontend down lets a
// request in flight on an HTTP/2 connection finish, and ends the
// connection (GOAWAY) rather than waiting for the deadline.
func TestTLSShutdownHTTP2(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, certFile, keyFile, 9, "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := newTLSListener(ln, deploy.Frontend{HeaderTimeout: time.Second, IdleTimeout: time.Minute, TLS: &deploy.TLS{CertFile: certFile, KeyFile: keyFile}}, dir, testLogger(t), func() {})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	f := newFrontend(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			time.Sleep(500 * time.Millisecond)
		}
		io.WriteString(w, r.Proto)
	}), deploy.Frontend{})
	c := tlsClient(ca.pool(), "127.0.0.1", true)
	c.Transport.(*http.Transport).DisableKeepAlives = false
	url := "https://" + l.Addr().String()
	if body, _, err := getTLS(t, c, url+"/"); err != nil || body != "HTTP/2.0" {
		t.Fatalf("first request: %q, %v; want HTTP/2.0", body, err)
	}
	slow := make(chan error, 1)
	go func() {
		body, _, err := getTLS(t, c, url+"/slow")
		if err == nil && body != "HTTP/2.0" {
			err = fmt.Errorf("answer %q", body)
		}
		slow <- err
	}()
	<-started
	// Shutdown waits for the request in flight (500ms) and for nothing
	// else: waiting for idle connections would run into the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v (connections were cut at the deadline)", err)
	}
	if err := <-slow; err != nil {
		t.Errorf("request in flight during shutdown: %v", err)
	}
}

func TestLBURL(t *testing.T) {
	addr := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, tt := range []struct {
		ln   net.Listener
		want string
	}{
		{fakeListener{addr("127.0.0.1:8080")}, "http://127.0.0.1:8080"},
		{&tlsListener{Listener: fakeListener{addr("127.0.0.1:8443")}}, "https://127.0.0.1:8443"},
		{&tlsListener{Listener: fakeListener{addr("127.0.0.1:443")}}, "https://127.0.0.1"},
		{&tlsListener{Listener: fakeListener{addr("127.0.0.1:443")}, spec: deploy.TLS{ACMEDomains: []string{"a.example.com", "b.example.com"}}}, "https://a.example.com"},
		{&tlsListener{Listener: fakeListener{addr("127.0.0.1:8443")}, spec: deploy.TLS{ACMEDomains: []string{"a.example.com"}}}, "https://a.example.com:8443"},
	} {
		if got := lbURL(tt.ln); got != tt.want {
			t.Errorf("lbURL(%s) = %q, want %q", tt.ln.Addr(), got, tt.want)
		}
	}
}

type fakeListener struct{ addr net.Addr }

func (fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (fakeListener) Close() error              { return nil }
func (l fakeListener) Addr() net.Addr          { return l.addr }

func TestRedirectToHTTPS(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		port, host, target string
		code               int
		location           string
	}{
		{"443", "app.example.com", "/a?b=c", 308, "https://app.example.com/a?b=c"},
		{"443", "app.example.com:80", "/", 308, "https://app.example.com/"},
		{"8443", "app.example.com:8080", "/x", 308, "https://app.example.com:8443/x"},
		{"8443", "[::1]:8080", "/x", 308, "https://[::1]:8443/x"},
		{"443", "[::1]:80", "/x", 308, "https://[::1]/x"},
		{"443", "", "/x", 400, ""},
	} {
		req, _ := http.NewRequest("POST", "http://placeholder"+tt.target, nil)
		req.Host = tt.host
		w := httptest.NewRecorder()
		redirectToHTTPS(tt.port).ServeHTTP(w, req)
		if w.Code != tt.code || w.Header().Get("Location") != tt.location {
			t.Errorf("port %s, Host %q: %d to %q, want %d to %q", tt.port, tt.host, w.Code, w.Header().Get("Location"), tt.code, tt.location)
		}
	}
}

// An HTTP/2 client that gives up in the middle of a body is the client's
// fault, as over HTTP/1.1: the replica stays in the pool.
func TestHTTP2AbortedBodyDoesNotEjectReplica(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, certFile, keyFile, 100, "app.slipway.test", "127.0.0.1")
	h := newLBHarness(t, deploy.Frontend{}, 1, nil)
	l := serveTestTLS(t, 0, deploy.Frontend{TLS: &deploy.TLS{CertFile: certFile, KeyFile: keyFile}}, dir, h.lb)
	url := "https://127.0.0.1:" + portOf(l.Addr()) + "/x"
	c := tlsClient(ca.pool(), "app.slipway.test", true)
	for range 5 {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, "POST", url, pr)
		req.ContentLength = 1000
		go func() {
			pw.Write([]byte("only part of it"))
			time.Sleep(100 * time.Millisecond)
			cancel()
			pw.CloseWithError(errors.New("client gave up"))
		}()
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	resp, err := c.Post(url, "text/plain", strings.NewReader("whole"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "POST /x 5 whole" {
		t.Errorf("after aborted bodies: %s %q", resp.Status, b)
	}
	if n := h.ejected.Load(); n != 0 {
		t.Errorf("HTTP/2 clients that broke off their bodies ejected the replica %d times", n)
	}
}
