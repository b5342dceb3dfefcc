package local

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"slipway.dev/slipway/internal/deploy"
)

// FuzzFrontend sends arbitrary bytes as a client connection: the front end
// must answer or close, never panic or hang.
func FuzzFrontend(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("PUT / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"))
	f.Add([]byte("HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("GET /\xff HTTP/9.9\r\n\r\n"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	fe := newFrontend(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.URL.Path == "/x" {
			w.Header().Set("Content-Length", "2")
			w.Write([]byte("ok"))
			return
		}
		w.Write(b)
	}), deploy.Frontend{})
	defer fe.Shutdown(context.Background())
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := sendRaw(ln.Addr().String(), string(data)); err != nil {
			t.Fatalf("the front end neither answered nor closed: %v", err)
		}
	})
}
