//go:build integration

package local

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/testenv"
)

// pebble is an ACME server (Pebble, with pebble-challtestsrv as its DNS
// server, which answers 127.0.0.1 for every name) run for one test.
type pebble struct {
	directory string // the ACME directory URL
	caFile    string // trusts the directory's own TLS certificate
	mgmt      string // management API: /roots/0 is the issuing root
	ca        *testCA
}

// startPebble runs Pebble on free ports of 127.0.0.1 until the test ends.
// Its validation authority checks HTTP-01 on httpPort and TLS-ALPN-01 on
// tlsPort of 127.0.0.1; its certificates are valid for validity.
func startPebble(t *testing.T, httpPort, tlsPort int, validity time.Duration) *pebble {
	t.Helper()
	bin := testenv.Env(t, "SLIPWAY_TEST_PEBBLE", "Pebble ACME server (scripts/testacme build prints its path)")
	dns := freePorts(t, 4)
	dir := t.TempDir()
	p := &pebble{
		directory: fmt.Sprintf("https://127.0.0.1:%d/dir", dns[1]),
		mgmt:      fmt.Sprintf("https://127.0.0.1:%d", dns[2]),
		caFile:    filepath.Join(dir, "ca.pem"),
		ca:        newTestCA(t),
	}
	p.ca.issue(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 1, "127.0.0.1")
	if err := os.WriteFile(p.caFile, p.ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", dns[1]),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", dns[2]),
		"certificate":             filepath.Join(dir, "cert.pem"),
		"privateKey":              filepath.Join(dir, "key.pem"),
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{"default": map[string]any{
			"description": "short-lived, for tests", "validityPeriod": int(validity.Seconds()),
		}},
	}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "pebble.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	runDaemon(t, filepath.Join(dir, "challtestsrv.log"), filepath.Join(filepath.Dir(bin), "pebble-challtestsrv"),
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dns[0]), "-management", fmt.Sprintf("127.0.0.1:%d", dns[3]),
		"-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	runDaemon(t, filepath.Join(dir, "pebble.log"), bin,
		"-config", filepath.Join(dir, "pebble.json"), "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dns[0]))
	c := tlsClient(p.ca.pool(), "127.0.0.1", false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(p.directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pebble.log"))
			t.Fatalf("Pebble's directory does not answer after 30s (%v)\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roots is the pool of Pebble's issuing root, from its management API.
func (p *pebble) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := tlsClient(p.ca.pool(), "127.0.0.1", false).Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("Pebble's root is not PEM: %q", b)
	}
	return pool
}

// runDaemon runs a program until the test ends, then stops it with
// SIGTERM (SIGKILL after 5s); its output goes to logFile, shown when the
// test fails.
func runDaemon(t *testing.T, logFile, bin string, args ...string) {
	t.Helper()
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", filepath.Base(bin), err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("%s:\n%s", filepath.Base(bin), b)
		}
	})
}

// freePorts returns n distinct free ports of 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

const acmeDomain = "app.slipway.test"

// waitForCert fetches url with c until the server presents a certificate
// other than not (the handshake waits for ACME), and returns its serial.
func waitForCert(t *testing.T, c *http.Client, url, not string, within time.Duration) (body, serial string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		body, serial, err := getTLS(t, c, url)
		if err == nil && serial != not {
			return body, serial
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new certificate within %s (last: serial %s, %v)", within, serial, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestACMETLSALPN gets a certificate from Pebble by TLS-ALPN-01 on the
// listen address, serves it over HTTP/2 to a client that trusts Pebble's
// root, and serves the renewed certificate when the first one nears its
// end, without a restart.
func TestACMETLSALPN(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, 2)
	tlsPort, nothing := ports[0], ports[1]
	// Certificates valid for 15s: autocert renews with a third left, ~10s in.
	p := startPebble(t, nothing, tlsPort, 15*time.Second)
	dir := t.TempDir()
	l := serveTestTLS(t, tlsPort, deploy.Frontend{TLS: &deploy.TLS{
		ACMEDomains: []string{acmeDomain}, ACMEEmail: "ops@slipway.test",
		ACMEDirectory: p.directory, ACMECAFile: p.caFile,
	}}, dir, protoEcho)
	if got, want := lbURL(l), "https://"+acmeDomain+":"+strconv.Itoa(tlsPort); got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	c := tlsClient(p.roots(t), acmeDomain, true)
	url := fmt.Sprintf("https://127.0.0.1:%d/hello", tlsPort)
	body, first := waitForCert(t, c, url, "", time.Minute)
	if body != "HTTP/2.0 tls=true /hello" {
		t.Errorf("answer %q, want HTTP/2.0 over TLS", body)
	}
	// The account and the certificate are kept in the environment's
	// directory, for the next start.
	u, _ := neturl.Parse(p.directory)
	cache := filepath.Join(dir, "acme", strings.ReplaceAll(u.Host, ":", "_"))
	for _, name := range []string{"acme_account+key", acmeDomain} {
		if _, err := os.Stat(filepath.Join(cache, name)); err != nil {
			t.Errorf("ACME cache: %v", err)
		}
	}
	_, second := waitForCert(t, c, url, first, time.Minute)
	t.Logf("certificate %s renewed as %s", first, second)
}

// TestACMEHTTP01 gets a certificate from Pebble by HTTP-01 on the
// redirect listener (TLS-ALPN-01 cannot succeed: Pebble checks it on a
// port where nothing listens), and redirects plain HTTP to HTTPS.
func TestACMEHTTP01(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, 3)
	tlsPort, httpPort, nothing := ports[0], ports[1], ports[2]
	p := startPebble(t, httpPort, nothing, time.Hour)
	l := serveTestTLS(t, tlsPort, deploy.Frontend{TLS: &deploy.TLS{
		ACMEDomains: []string{acmeDomain}, ACMEDirectory: p.directory, ACMECAFile: p.caFile,
		RedirectFrom: fmt.Sprintf("127.0.0.1:%d", httpPort),
	}}, t.TempDir(), protoEcho)
	c := tlsClient(p.roots(t), acmeDomain, false)
	body, _ := waitForCert(t, c, fmt.Sprintf("https://127.0.0.1:%d/hello", tlsPort), "", time.Minute)
	if body != "HTTP/1.1 tls=true /hello" {
		t.Errorf("answer %q, want HTTP/1.1 over TLS", body)
	}
	req, _ := http.NewRequest("PUT", fmt.Sprintf("http://127.0.0.1:%d/hello?x=1", httpPort), strings.NewReader("x"))
	req.Host = acmeDomain
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := fmt.Sprintf("https://%s:%s/hello?x=1", acmeDomain, portOf(l.Addr()))
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || loc != want {
		t.Errorf("plain PUT: %s to %q, want 308 to %q", resp.Status, loc, want)
	}
}

// TestACMEBackend deploys replicas behind a load balancer whose supervisor
// gets its certificate from Pebble by TLS-ALPN-01 and keeps it in the
// environment's directory; status reports the domain's https URL.
func TestACMEBackend(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, 2)
	tlsPort, nothing := ports[0], ports[1]
	p := startPebble(t, nothing, tlsPort, time.Hour)
	v1r, _, _ := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("acme")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 1
	spec.ListenAddr = fmt.Sprintf("127.0.0.1:%d", tlsPort)
	spec.Frontend.TLS = &deploy.TLS{ACMEDomains: []string{acmeDomain}, ACMEDirectory: p.directory, ACMECAFile: p.caFile}
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := b.Status(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("https://%s:%d", acmeDomain, tlsPort); st.URL != want {
		t.Errorf("URL = %q, want %q", st.URL, want)
	}
	body, _ := waitForCert(t, tlsClient(p.roots(t), acmeDomain, true), fmt.Sprintf("https://127.0.0.1:%d/headers", tlsPort), "", time.Minute)
	var got http.Header
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("replica's /headers: %v: %q", err, body)
	}
	if v := got.Get("X-Forwarded-Proto"); v != "https" {
		t.Errorf("replica saw X-Forwarded-Proto %q, want https", v)
	}
	u, _ := neturl.Parse(p.directory)
	cache := filepath.Join(b.ownDir("acme"), "acme", strings.ReplaceAll(u.Host, ":", "_"))
	fi, err := os.Stat(cache)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", cache, fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(cache, acmeDomain)); err != nil {
		t.Errorf("certificate not kept: %v", err)
	}
}
