package local

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"slipway.dev/slipway/internal/deploy"
)

// BenchmarkProxy sends requests one after another over one kept-alive
// client connection through the front end and the balancer to one upstream
// (a net/http server in this process), and reports the proxy's allocations
// per request along with the time of a whole round trip.
func BenchmarkProxy(b *testing.B) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"status":"ok"}`)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	go srv.Serve(up)
	b.Cleanup(func() { srv.Close() })

	lb := newBalancer("bench", realClock{}, func(string, error) {})
	lb.setReady(lb.add("r1", up.Addr().String(), "0123456789ab"), true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fe := newFrontend(ln, lb, deploy.Frontend{})
	b.Cleanup(func() { fe.Shutdown(context.Background()) })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
