//go:build integration

package test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"example.com/birthday-app/internal/dbtest"
)

// slowPut is a PUT whose body has not been sent yet: the handler is running
// (the server asked for the body with 100 Continue) and waits for it.
type slowPut struct {
	conn net.Conn
	rd   *bufio.Reader
	body string
}

func startSlowPut(t *testing.T, base, name string) *slowPut {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := `{"dateOfBirth":"1985-05-05"}`
	fmt.Fprintf(conn, "PUT /hello/%s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", name, len(body))
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatalf("PUT %s: read interim response: %v", name, err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("PUT %s: got %s before sending the body, want 100 Continue", name, resp.Status)
	}
	return &slowPut{conn: conn, rd: rd, body: body}
}

func (p *slowPut) finish(t *testing.T) int {
	t.Helper()
	if _, err := p.conn.Write([]byte(p.body)); err != nil {
		t.Fatalf("send body: %v", err)
	}
	resp, err := http.ReadResponse(p.rd, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestGracefulShutdown sends SIGTERM while requests are in flight: readiness
// turns 503 at once while the listener still accepts requests for the
// shutdown delay; then the listener closes, the in-flight requests still
// complete, and the process exits 0 with their writes saved.
func TestGracefulShutdown(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Fresh(t)
			a := start(t, db, "-shutdown-delay", "3s", "-shutdown-grace", "60s")
			var inflight []*slowPut
			for _, name := range []string{"DrainA", "DrainB", "DrainC"} {
				inflight = append(inflight, startSlowPut(t, a.URL, name))
			}

			a.cmd.Process.Signal(syscall.SIGTERM)
			var ready result
			for range 200 {
				if ready = call(t, "GET", a.URL+"/readyz", ""); ready.Code == http.StatusServiceUnavailable {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if want := `{"status":"draining","error":"the server is shutting down"}`; ready.Code != 503 || ready.Body != want {
				t.Fatalf("/readyz after SIGTERM = %+v, want 503 %s", ready, want)
			}
			// Requests that arrive during the delay are still served.
			if r := call(t, "PUT", a.URL+"/hello/Late", `{"dateOfBirth":"1990-01-01"}`); r.Code != 204 {
				t.Errorf("PUT during the shutdown delay = %+v, want 204", r)
			}
			if r := call(t, "GET", a.URL+"/statusz", ""); r.Code != 503 {
				t.Errorf("/statusz during the drain = %+v, want 503", r)
			}

			// Wait until the listener is closed: the server is now draining
			// connections, with our three requests still in flight.
			closed := false
			for range 600 {
				c, err := net.Dial("tcp", strings.TrimPrefix(a.URL, "http://"))
				if err != nil {
					closed = true
					break
				}
				c.Close()
				time.Sleep(50 * time.Millisecond)
			}
			if !closed {
				t.Fatalf("the listener was never closed after SIGTERM; logs:\n%s", a.Logs())
			}
			select {
			case <-a.exited:
				t.Fatalf("birthday-app exited with requests in flight; logs:\n%s", a.Logs())
			default:
			}
			for i, p := range inflight {
				if code := p.finish(t); code != http.StatusNoContent {
					t.Errorf("in-flight request %d finished with %d, want 204", i, code)
				}
			}
			if err := a.wait(); err != nil {
				t.Fatalf("birthday-app exited with %v after draining; logs:\n%s", err, a.Logs())
			}
			if !strings.Contains(a.Logs(), `"msg":"stopped"`) {
				t.Errorf("no clean stop in the logs:\n%s", a.Logs())
			}

			// The writes made during shutdown are in the database.
			again := start(t, db)
			for _, name := range []string{"DrainA", "DrainB", "DrainC", "Late"} {
				if r := call(t, "GET", again.URL+"/hello/"+name, ""); r.Code != 200 {
					t.Errorf("GET %s after restart = %+v, want 200", name, r)
				}
			}
		})
	}
}

// TestShutdownGraceExpires checks that a request that outlives the grace
// period is cut off and the process says so and exits non-zero.
func TestShutdownGraceExpires(t *testing.T) {
	a := start(t, dbtest.SQLite(t), "-shutdown-grace", "200ms")
	p := startSlowPut(t, a.URL, "Stuck")
	a.cmd.Process.Signal(syscall.SIGTERM)
	if err := a.wait(); err == nil {
		t.Errorf("birthday-app exited 0 although a request was cut off; logs:\n%s", a.Logs())
	}
	if !strings.Contains(a.Logs(), "grace period were cut off") {
		t.Errorf("the logs do not say requests were cut off:\n%s", a.Logs())
	}
	p.conn.Close()
}
