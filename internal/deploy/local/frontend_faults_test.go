package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// lbHarness is a balancer and its front end in front of replicas that are
// real net/http servers on loopback, for tests of what clients can do to
// the front end.
type lbHarness struct {
	addr     string
	fe       *frontend
	lb       *balancer
	replicas []*replica
	ejected  atomic.Int64
	seen     chan *http.Request // every request a replica got, body read
}

func newLBHarness(t testing.TB, limits deploy.Frontend, n int, configure func(*http.Server)) *lbHarness {
	t.Helper()
	h := &lbHarness{seen: make(chan *http.Request, 1000)}
	return h.start(t, limits, n, h.replicaHandler, configure)
}

// start runs n replicas with handler, and the balancer and front end.
func (h *lbHarness) start(t testing.TB, limits deploy.Frontend, n int, handler http.HandlerFunc, configure func(*http.Server)) *lbHarness {
	t.Helper()
	h.lb = newBalancer("test", realClock{}, func(string, error) { h.ejected.Add(1) })
	for i := range n {
		up, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler, ErrorLog: discardLog}
		if configure != nil {
			configure(srv)
		}
		go srv.Serve(up)
		t.Cleanup(func() { srv.Close() })
		r := &replica{name: fmt.Sprintf("r%d", i), addr: up.Addr().String(),
			rev: &revision{spec: deploy.Spec{Commit: strings.Repeat("a", 40)}}}
		r.backend = h.lb.add(r.name, r.addr, r.rev.spec.Commit)
		h.lb.setReady(r.backend, true)
		h.replicas = append(h.replicas, r)
	}
	h.lb.setTrusted(limits.TrustedProxies)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.fe = newFrontend(ln, h.lb, limits)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.fe.Shutdown(ctx)
	})
	return h
}

var discardLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)

// replicaHandler is the app: /big refuses bodies over 1 MiB with 413, as
// apps do; /slow sends a large answer; anything else echoes what it got.
func (h *lbHarness) replicaHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/big" {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	select {
	case h.seen <- r:
	default:
	}
	if r.URL.Path == "/slow" {
		chunk := strings.Repeat("x", 64<<10)
		for range 256 { // 16 MiB: more than any socket buffer
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		return
	}
	fmt.Fprintf(w, "%s %s %d %s", r.Method, r.URL.RequestURI(), len(body), body)
}

// sendRaw sends raw on a new connection to addr, closes its sending side,
// and returns everything the server answered until it closed (or reset)
// the connection, within 10 s.
func sendRaw(addr, raw string) ([]byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		io.WriteString(c, raw)
		c.(*net.TCPConn).CloseWrite()
	}()
	return io.ReadAll(c)
}

// do sends raw bytes through the front end (see sendRaw) and returns its
// answer.
func (h *lbHarness) do(t testing.TB, raw string) string {
	t.Helper()
	b, err := sendRaw(h.addr, raw)
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, b)
	}
	return string(b)
}

// get sends a normal request and returns its status.
func (h *lbHarness) get(client *http.Client, path string) (int, error) {
	resp, err := client.Get("http://" + h.addr + path)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// open counts the client connections the front end is serving.
func (h *lbHarness) open() int {
	h.fe.mu.Lock()
	defer h.fe.mu.Unlock()
	return len(h.fe.conns)
}

// drainSeen returns the requests the replicas got so far.
func (h *lbHarness) drainSeen() []*http.Request {
	var rs []*http.Request
	for {
		select {
		case r := <-h.seen:
			rs = append(rs, r)
		case <-time.After(50 * time.Millisecond):
			return rs
		}
	}
}

// Fault 1: an accept error other than a timeout ended the accept loop for
// good, and status went on saying the environment was healthy.
func TestFrontendSurvivesAcceptErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, fail: make(chan struct{})}
	h := &lbHarness{seen: make(chan *http.Request, 100)}
	up := newLBHarness(t, deploy.Frontend{}, 1, nil)
	h.lb = up.lb
	fe := newFrontend(ln, h.lb, deploy.Frontend{})
	defer fe.Shutdown(context.Background())

	s := newSupervisor(t.Context(), t.TempDir(), "", realClock{}, slog.New(slog.DiscardHandler))
	s.current = &revision{spec: deploy.Spec{Replicas: 1}, id: "x"}
	s.lbSrv, s.lbLn = fe, ln
	s.replicas = up.replicas
	up.replicas[0].ready = true
	if st := s.status(); !st.Healthy {
		t.Fatalf("before any fault: status %+v, want healthy", st)
	}

	ln.failing.Store(true)
	// The accept in progress returns this connection; the next ones fail.
	// fail is closed at the second failing accept: the front end has
	// handled the first error by then.
	wake, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wake.Close()
	<-ln.fail
	st := s.status()
	if st.Healthy || !strings.Contains(st.Message, "cannot accept connections") || !strings.Contains(st.Message, "too many open files") {
		t.Errorf("while accepting fails: healthy=%v message=%q; want unhealthy, saying why", st.Healthy, st.Message)
	}
	ln.failing.Store(false)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + inner.Addr().String() + "/after")
	if err != nil {
		t.Fatalf("after accept errors the front end no longer serves: %v", err)
	}
	resp.Body.Close()
	if st := s.status(); !st.Healthy {
		t.Errorf("accepting works again, but status says %q", st.Message)
	}
}

// failingListener fails Accept with EMFILE while failing is set, and
// closes fail when the caller came back after a failed Accept.
type failingListener struct {
	net.Listener
	failing atomic.Bool
	fail    chan struct{}
	failed  atomic.Int64
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.failing.Load() {
		if l.failed.Add(1) == 2 {
			close(l.fail)
		}
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// Fault 2: a client that sends less body than it announced, and closes,
// got the replica ejected; and a request on a pooled connection the
// replica had closed while idle failed with 502 and ejected it too.
func TestClientFaultsDoNotEjectReplicas(t *testing.T) {
	h := newLBHarness(t, deploy.Frontend{}, 2, func(s *http.Server) { s.IdleTimeout = 200 * time.Millisecond })
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 {
		switch i % 4 {
		case 0:
			h.do(t, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
		case 1:
			h.do(t, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
		case 2:
			h.do(t, "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc")
		case 3:
			h.do(t, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n"+strings.Repeat("y", 100000))
		}
		if code, err := h.get(client, "/ok"); err != nil || code != 200 {
			t.Fatalf("after aborted body %d a normal request got %d, %v", i, code, err)
		}
	}
	if n := h.ejected.Load(); n != 0 {
		t.Errorf("clients that broke off their bodies ejected replicas %d times", n)
	}

	// The replicas close idle connections after 200 ms; the pool must not
	// send a POST on one of those.
	for i := range 3 {
		time.Sleep(400 * time.Millisecond)
		resp, err := client.Post("http://"+h.addr+"/x", "text/plain", strings.NewReader("after idle"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("POST %d after the replicas closed their idle connections: %s %q", i, resp.Status, b)
		}
	}
	if n := h.ejected.Load(); n != 0 {
		t.Errorf("idle connections closed by replicas ejected them %d times", n)
	}
}

// Fault 3: no limit on the request head.
func TestFrontendBoundsRequestHead(t *testing.T) {
	h := newLBHarness(t, deploy.Frontend{MaxHeaderBytes: 8 << 10}, 1, nil)
	for name, raw := range map[string]string{
		"long URL":    "GET /" + strings.Repeat("a", 16<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n",
		"long header": "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 16<<10) + "\r\n\r\n",
		"many":        "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 3000) + "\r\n",
		"absolute":    "GET http://a/ HTTP/1.1\r\nX-Big: " + strings.Repeat("b", 16<<10) + "\r\nHost: a\r\n\r\n",
	} {
		if got := h.do(t, raw); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
			t.Errorf("%s: answered %.60q, want 431", name, got)
		}
	}
	if got := h.drainSeen(); len(got) != 0 {
		t.Errorf("%d requests over the head limit reached a replica", len(got))
	}
	if got := h.do(t, "GET /"+strings.Repeat("a", 4<<10)+" HTTP/1.1\r\nHost: a\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("a request within the limit: %.60q, want 200", got)
	}

	// A client streaming an endless header line is cut off at the limit,
	// not buffered without end.
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nX-Endless: ")
	junk := []byte(strings.Repeat("z", 64<<10))
	var answer []byte
	go func() {
		for range 1024 { // up to 64 MiB
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	answer, _ = io.ReadAll(c)
	if !strings.HasPrefix(string(answer), "HTTP/1.1 431 ") {
		t.Errorf("an endless header line got %.60q, want 431", answer)
	}
}

// Fault 4: inputs net/http's server refuses, and framing the balancer got
// wrong.
func TestFrontendIsStrict(t *testing.T) {
	h := newLBHarness(t, deploy.Frontend{}, 1, nil)
	for _, tt := range []struct {
		name, raw, want string
	}{
		{"space before colon", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 400 "},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
		{"absolute form without Host", "GET http://a/ HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 "},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "HTTP/1.1 400 "},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP/1.1 505 "},
		{"HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", "HTTP/1.1 505 "},
		{"no version", "GET /\r\n\r\n", "HTTP/1.1 400 "},
		{"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 505 "},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", "HTTP/1.1 405 "},
		{"unknown coding", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 501 "},
		{"two lengths", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "HTTP/1.1 400 "},
		{"bad header value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", "HTTP/1.1 400 "},
		{"Expect other than 100-continue", "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", "HTTP/1.1 417 "},
	} {
		if got := h.do(t, tt.raw); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: answered %.80q, want %q", tt.name, got, tt.want)
		}
		if seen := h.drainSeen(); len(seen) != 0 {
			t.Errorf("%s: reached the replica as %s %s", tt.name, seen[0].Method, seen[0].URL)
		}
	}

	t.Run("malformed chunked body ends the connection", func(t *testing.T) {
		h.drainSeen()
		got := h.do(t, "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n"+
			"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
		for _, r := range h.drainSeen() {
			if r.URL.Path == "/smuggled" {
				t.Errorf("the request after a malformed chunked body was served (answer %q)", got)
			}
		}
	})

	t.Run("Content-Length with leading zeros reaches the replica once", func(t *testing.T) {
		h.drainSeen()
		got := h.do(t, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0028\r\nConnection: close\r\n\r\n"+`{"dateOfBirth":"2000-01-01"}`)
		if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Fatalf("answered %q", got)
		}
		seen := h.drainSeen()
		if len(seen) != 1 {
			t.Fatalf("replica got %d requests", len(seen))
		}
		if cl := seen[0].Header.Values("Content-Length"); len(cl) != 1 || cl[0] != "28" || seen[0].ContentLength != 28 {
			t.Errorf("replica saw Content-Length %q / %d, want one header of 28", cl, seen[0].ContentLength)
		}
	})

	t.Run("pipelined HEAD then GET", func(t *testing.T) {
		got := h.do(t, "HEAD /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
		if n := strings.Count(got, "HTTP/1.1 200 "); n != 2 || !strings.HasSuffix(got, "GET /b 0 ") {
			t.Errorf("answered %q, want two 200s, the second with GET's body", got)
		}
	})

	t.Run("X-Forwarded-* from an untrusted client are replaced", func(t *testing.T) {
		h.drainSeen()
		h.do(t, "GET /x HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"+
			"X-Forwarded-Host: evil.example\r\nForwarded: for=203.0.113.7\r\nConnection: close\r\n\r\n")
		seen := h.drainSeen()
		if len(seen) != 1 {
			t.Fatalf("replica got %d requests", len(seen))
		}
		got := seen[0].Header
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "a.example", "Forwarded": ""}
		for k, v := range want {
			if got.Get(k) != v || len(got.Values(k)) > 1 {
				t.Errorf("replica saw %s %q, want %q", k, got.Values(k), v)
			}
		}
	})

	t.Run("body over the app's limit passes the app's 413 without internal addresses", func(t *testing.T) {
		got := h.do(t, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 5242880\r\n\r\n"+strings.Repeat("z", 5<<20))
		if !strings.HasPrefix(got, "HTTP/1.1 413 ") || strings.Contains(got, "127.0.0.1") {
			t.Errorf("answered %.200q, want the app's 413", got)
		}
		if n := h.ejected.Load(); n != 0 {
			t.Errorf("the 413 ejected the replica %d times", n)
		}
	})
}

func TestTrustedProxyHeadersAreKept(t *testing.T) {
	h := newLBHarness(t, deploy.Frontend{TrustedProxies: []string{"127.0.0.0/8"}}, 1, nil)
	h.do(t, "GET /x HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: shop.example\r\nConnection: close\r\n\r\n")
	seen := h.drainSeen()
	if len(seen) != 1 {
		t.Fatalf("replica got %d requests", len(seen))
	}
	got := seen[0].Header
	for k, v := range map[string]string{"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"} {
		if got.Get(k) != v {
			t.Errorf("behind a trusted proxy the replica saw %s %q, want %q", k, got.Get(k), v)
		}
	}
}

// Slow clients are cut off by the body and write timeouts, and do not
// count against the replica.
func TestFrontendTimeouts(t *testing.T) {
	h := newLBHarness(t, deploy.Frontend{BodyTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}, 1, nil)
	// A connection that never sends a byte has the header timeout, not
	// the (longer) idle timeout.
	silent := newLBHarness(t, deploy.Frontend{HeaderTimeout: 300 * time.Millisecond, IdleTimeout: time.Hour}, 1, nil)
	sc, err := net.Dial("tcp", silent.addr)
	if err != nil {
		t.Fatal(err)
	}
	sc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(sc); err != nil {
		t.Errorf("a silent connection was kept past the header timeout: %v", err)
	}
	sc.Close()
	for _, tt := range []struct{ name, raw string }{
		{"stalled body", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nten bytes."},
		{"stalled head", "GET /x HTTP/1.1\r\nHost: a\r\n"},
		{"silent", ""},
		{"idle", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, tt.raw)
		start := time.Now()
		_, err = io.ReadAll(c) // the connection stays open for writing
		c.Close()
		if err != nil {
			t.Errorf("%s: the front end kept the connection for %s: %v", tt.name, time.Since(start), err)
		}
	}

	// A client that does not read a large answer: the front end lets go
	// of it once its write waited the write timeout.
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	waitUntil(t, "the request to be served", func() bool { return len(h.seen) > 0 })
	waitUntil(t, "the front end to drop the client that does not read", func() bool { return h.open() == 0 })
	if n := h.ejected.Load(); n != 0 {
		t.Errorf("slow clients ejected the replica %d times", n)
	}
}

func TestFrontendCapsConnections(t *testing.T) {
	h := newLBHarness(t, deploy.Frontend{MaxConnections: 5}, 1, nil)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 5 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitUntil(t, "five connections held", func() bool { return h.open() == 5 })
	// Were it queued rather than refused, it would wait for a held
	// connection to close, which none does: do would run out of time.
	if got := h.do(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 503 ") {
		t.Errorf("a connection over the limit got %.60q, want 503", got)
	}
	held[0].Close()
	held = held[1:]
	waitUntil(t, "a connection freed", func() bool { return h.open() < 5 })
	if got := h.do(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("below the limit again: %.60q, want 200", got)
	}
}

func TestFailuresDoNotRevealReplicaAddresses(t *testing.T) {
	h := newLBHarness(t, deploy.Frontend{}, 1, nil)
	// The replica's port now refuses connections.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.lb.remove(h.replicas[0].backend)
	be := h.lb.add("r0", dead.Addr().String(), strings.Repeat("a", 40))
	h.lb.setReady(be, true)
	dead.Close()
	got := h.do(t, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
	if !strings.HasPrefix(got, "HTTP/1.1 502 ") || strings.Contains(got, "127.0.0.1") || strings.Contains(got, "refused") {
		t.Errorf("answered %q: want 502 that does not show the replica", got)
	}
	h.lb.setReady(be, false)
	got = h.do(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 503 ") || !strings.Contains(got, "no replica is ready") {
		t.Errorf("with no replica: %q", got)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
