package local

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"

	"slipway.dev/slipway/internal/deploy"
)

// handled is what an app's handler saw of one request.
type handled struct {
	Method, URI, Host, Body string
	BodyOK                  bool
}

// recorder is an app that records every request it handles, reading the
// whole body; it answers 400 when the body could not be read.
type recorder struct {
	mu   sync.Mutex
	seen []handled
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.seen = append(rec.seen, handled{Method: r.Method, URI: r.RequestURI, Host: r.Host, Body: string(body), BodyOK: err == nil})
	rec.mu.Unlock()
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %s %d", r.Method, r.RequestURI, len(body))
}

func (rec *recorder) take() []handled {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s := rec.seen
	rec.seen = nil
	return s
}

// exchange sends raw on a new connection to addr, closes the sending side,
// and returns the status of each answer, reading bodies by the methods of
// the requests the app handled (an answer past those is the server's own
// refusal, which ends the connection).
func exchange(t testing.TB, addr, raw string, methods func() []string) []int {
	t.Helper()
	all, err := sendRaw(addr, raw)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s neither answered nor closed: %v", addr, err)
	}
	ms := methods()
	br := bufio.NewReader(bytes.NewReader(all))
	var codes []int
	for i := 0; ; i++ {
		m := http.MethodGet
		if i < len(ms) {
			m = ms[i]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			return codes
		}
		io.Copy(io.Discard, resp.Body)
		codes = append(codes, resp.StatusCode)
	}
}

// FuzzFrontendAgainstNetHTTP sends the same bytes to net/http's server and
// through the front end to a replica, and checks that the front end is at
// least as strict: every request that reaches the replica with its whole
// body was handled the same way by net/http's server, and a request that
// net/http's server refuses gets the same status from the front end.
func FuzzFrontendAgainstNetHTTP(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nshort",
		"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0028\r\n\r\n{\"dateOfBirth\":\"2000-01-01\"}",
		"HEAD /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
		"GET /\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n X-Folded: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n",
		"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n",
	} {
		f.Add([]byte(seed))
	}
	ref := &recorder{}
	refLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	refSrv := &http.Server{Handler: ref, ErrorLog: discardLog}
	go refSrv.Serve(refLn)
	f.Cleanup(func() { refSrv.Close() })

	app := &recorder{}
	h := (&lbHarness{seen: make(chan *http.Request, 1)}).start(f, deploy.Frontend{}, 1, app.ServeHTTP, nil)

	f.Fuzz(func(t *testing.T, data []byte) {
		raw := string(data)
		ref.take()
		app.take()
		var refSeen, appSeen []handled
		refCodes := exchange(t, refLn.Addr().String(), raw, func() []string { refSeen = ref.take(); return methodsOf(refSeen) })
		appCodes := exchange(t, h.addr, raw, func() []string { appSeen = app.take(); return methodsOf(appSeen) })

		for i, got := range appSeen {
			if !got.BodyOK {
				continue
			}
			if i >= len(refSeen) || got != refSeen[i] {
				var want any = "nothing: net/http's server refused it"
				if i < len(refSeen) {
					want = refSeen[i]
				}
				t.Fatalf("request %d reached the replica as %+v; net/http's server handled %v", i, got, want)
			}
		}
		// net/http's server refused the request after the last it handled:
		// so must the front end, with the same status.
		n := len(refSeen)
		if len(refCodes) == n+1 && len(appSeen) == n && !slices.Contains([]int{http.StatusOK}, refCodes[n]) {
			if len(appCodes) <= n || appCodes[n] != refCodes[n] {
				t.Fatalf("net/http's server refused request %d with %d; the front end answered %v", n, refCodes[n], appCodes)
			}
		}
	})
}

func methodsOf(hs []handled) []string {
	ms := make([]string, len(hs))
	for i, h := range hs {
		ms[i] = h.Method
	}
	return ms
}
