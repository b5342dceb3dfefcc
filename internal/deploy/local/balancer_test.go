package local

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// upstream is a replica for the balancer's tests: a net/http server on
// loopback that answers with its name, and holds the requests to /hold
// until release is closed.
type upstream struct {
	name    string
	addr    string
	held    chan struct{} // a request to /hold arrived
	release chan struct{}
	closed  chan struct{} // a connection to it was closed
}

func startUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	u := &upstream{name: name, held: make(chan struct{}, 10), release: make(chan struct{}),
		closed: make(chan struct{}, 10)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				u.held <- struct{}{}
				<-u.release
			}
			fmt.Fprint(w, u.name)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				u.closed <- struct{}{}
			}
		},
		ErrorLog: discardLog,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

// get sends GET path through lb and returns the answer's status and body,
// and the commit it says answered.
func get(lb *balancer, path string) (code int, body, commit string) {
	rec := httptest.NewRecorder()
	lb.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app"+path, nil))
	return rec.Code, rec.Body.String(), rec.Header().Get("Slipway-Commit")
}

// poolNames lists the backends lb picks from.
func poolNames(lb *balancer) []string {
	var names []string
	for _, be := range *lb.pool.Load() {
		names = append(names, be.name)
	}
	return names
}

// within fails the test unless ch delivers within 5 s.
func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("waited 5s for %s", what)
		panic("unreachable")
	}
}

func TestBalancerPicksReadyBackends(t *testing.T) {
	a, b := startUpstream(t, "a"), startUpstream(t, "b")
	lb := newBalancer("test", realClock{}, func(string, error) { t.Error("a backend was ejected") })
	ba := lb.add("a", a.addr, "commit-a")
	bb := lb.add("b", b.addr, "commit-b")

	if code, _, _ := get(lb, "/"); code != http.StatusServiceUnavailable {
		t.Errorf("with no backend ready: %d, want 503", code)
	}
	lb.setReady(ba, true)
	for range 4 {
		code, body, commit := get(lb, "/")
		if diff := cmp.Diff("200 a commit-a", fmt.Sprint(code, " ", body, " ", commit)); diff != "" {
			t.Errorf("with a ready (-want +got):\n%s", diff)
		}
	}
	lb.setReady(bb, true)
	if diff := cmp.Diff([]string{"a", "b"}, poolNames(lb)); diff != "" {
		t.Errorf("pool with both ready (-want +got):\n%s", diff)
	}
	seen := map[string]int{}
	for range 10 {
		_, body, _ := get(lb, "/")
		seen[body]++
	}
	if diff := cmp.Diff(map[string]int{"a": 5, "b": 5}, seen); diff != "" {
		t.Errorf("with both ready, one request at a time: ties not broken in turn (-want +got):\n%s", diff)
	}
	lb.setReady(ba, false)
	for range 4 {
		if _, body, _ := get(lb, "/"); body != "b" {
			t.Errorf("with a unready, %s answered", body)
		}
	}
}

func TestBalancerDrainWaitsForRequestsInFlight(t *testing.T) {
	a, b := startUpstream(t, "a"), startUpstream(t, "b")
	lb := newBalancer("test", realClock{}, func(string, error) { t.Error("a backend was ejected") })
	ba, bb := lb.add("a", a.addr, "commit-a"), lb.add("b", b.addr, "commit-b")
	lb.setReady(ba, true)

	answered := make(chan string)
	go func() {
		_, body, _ := get(lb, "/hold")
		answered <- body
	}()
	within(t, "the request to reach a", a.held)
	lb.setReady(bb, true)

	if !lb.drain(ba) {
		t.Fatal("drain of a backend that was not draining reported false")
	}
	if lb.drain(ba) {
		t.Error("drain of a draining backend reported true")
	}
	if diff := cmp.Diff([]string{"b"}, poolNames(lb)); diff != "" {
		t.Errorf("pool after a started draining (-want +got):\n%s", diff)
	}
	for range 4 {
		if _, body, _ := get(lb, "/"); body != "b" {
			t.Errorf("a request went to %s after a started draining", body)
		}
	}
	// Readiness checks that fail and pass again meanwhile.
	lb.setReady(ba, false)
	lb.setReady(ba, true)
	if diff := cmp.Diff([]string{"b"}, poolNames(lb)); diff != "" {
		t.Errorf("pool after a draining backend was set ready (-want +got):\n%s", diff)
	}
	if _, body, _ := get(lb, "/"); body != "b" {
		t.Errorf("a draining backend set ready was picked (%s answered)", body)
	}
	if lb.waitDrained(ba, 20*time.Millisecond) {
		t.Error("waitDrained reported done while a request was in flight")
	}

	drained := make(chan bool)
	go func() { drained <- lb.waitDrained(ba, time.Minute) }()
	select {
	case <-drained:
		t.Fatal("waitDrained returned while a request was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(a.release)
	if body := within(t, "the held request's answer", answered); body != "a" {
		t.Errorf("the request in flight got %q, want a's answer", body)
	}
	if !within(t, "waitDrained to return", drained) {
		t.Error("waitDrained reported the grace period over, want done")
	}
}

func TestBalancerRemoveClosesConnections(t *testing.T) {
	a := startUpstream(t, "a")
	lb := newBalancer("test", realClock{}, func(string, error) { t.Error("a backend was ejected") })
	ba := lb.add("a", a.addr, "commit-a")
	lb.setReady(ba, true)

	// Two requests at once: two connections. One ends and its connection
	// is pooled; the other is in flight when the backend is removed.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { get(lb, "/hold") })
	}
	within(t, "the first request to reach a", a.held)
	within(t, "the second request to reach a", a.held)
	a.release <- struct{}{} // one handler goes on
	waitUntil(t, "a connection to be pooled", func() bool {
		ba.conns.mu.Lock()
		defer ba.conns.mu.Unlock()
		return len(ba.conns.idle) == 1
	})

	lb.remove(ba)
	within(t, "the pooled connection to be closed", a.closed)
	if code, _, _ := get(lb, "/"); code != http.StatusServiceUnavailable {
		t.Errorf("after remove: %d, want 503", code)
	}
	close(a.release)
	wg.Wait()
	within(t, "the connection of the request in flight to be closed once it ended", a.closed)
	if n := ba.outstanding.Load(); n != 0 {
		t.Errorf("%d requests in flight after all ended", n)
	}
}

func TestBalancerEjectReportsOwner(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().String()
	dead.Close()
	type ejection struct {
		name string
		err  error
	}
	ejected := make(chan ejection, 10)
	lb := newBalancer("test", realClock{}, func(name string, err error) { ejected <- ejection{name, err} })
	lb.setReady(lb.add("env-abcde-7", addr, "commit"), true)

	if code, _, _ := get(lb, "/"); code != http.StatusBadGateway {
		t.Errorf("from a backend that refuses connections: %d, want 502", code)
	}
	e := within(t, "the ejection", ejected)
	if e.name != "env-abcde-7" || !errors.Is(e.err, syscall.ECONNREFUSED) {
		t.Errorf("ejected %q with %v, want env-abcde-7 with connection refused", e.name, e.err)
	}
}
