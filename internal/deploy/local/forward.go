package local

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The balancer forwards plain HTTP/1.1 requests itself, over its own pool of
// connections to each replica, on the goroutine that serves the request:
// no hand-off to transport goroutines per request. Upgrades (websockets) go
// through httputil.ReverseProxy instead.

// upConn is a connection to a replica.
type upConn struct {
	net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// connPool keeps idle connections to one replica.
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

const maxIdlePerReplica = 256

var dialer = &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}

func (p *connPool) get(addr string) (c *upConn, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c = p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	nc, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &upConn{Conn: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 8<<10)}, false, nil
}

func (p *connPool) put(c *upConn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdlePerReplica {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// close closes the idle connections and every one given back later.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.dropIdle()
}

// dropIdle closes the idle connections (the replica's process ended).
func (p *connPool) dropIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// hopHeaders are not forwarded (RFC 9110, 7.6.1).
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
}

func isUpgrade(req *http.Request) bool {
	return req.Header.Get("Upgrade") != "" && headerHasToken(req.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serve forwards req to a replica, retrying once on another replica when
// that is safe, and writes the answer to w.
func (b *balancer) serve(w http.ResponseWriter, req *http.Request) {
	replayable := replayable(req)
	var tried *replica
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		r := b.pick(tried)
		if r == nil {
			if lastErr == nil {
				lastErr = errNoReplica
			}
			break
		}
		if attempt > 0 && req.GetBody != nil {
			req.Body, _ = req.GetBody()
		}
		wrote, err := b.forward(w, req, r, replayable)
		r.outstanding.Add(-1)
		if err == nil {
			return
		}
		if wrote {
			// The answer is partly sent: cut the client's connection so
			// it does not take it for a whole one.
			panic(http.ErrAbortHandler)
		}
		lastErr = err
		if connectionFailed(err) {
			b.eject(r, err)
		}
		if !mayRetry(req, replayable, err) {
			break
		}
		tried = r
	}
	b.fail(w, req, lastErr)
}

// forward sends req to r and copies the answer to w. wrote reports whether
// anything was written to w.
func (b *balancer) forward(w http.ResponseWriter, req *http.Request, r *replica, replayable bool) (wrote bool, err error) {
	c, reused, err := r.conns.get(r.addr)
	if err != nil {
		return false, err
	}
	resp, err := b.roundTrip(c, req)
	if err != nil && reused && replayable && idempotent(req.Method) {
		// The replica may have closed the idle connection: once more on a
		// fresh one.
		c.Close()
		if req.GetBody != nil {
			req.Body, _ = req.GetBody()
		}
		if c, _, err = r.conns.get(r.addr); err != nil {
			return false, err
		}
		resp, err = b.roundTrip(c, req)
	}
	if err != nil {
		c.Close()
		return false, err
	}
	h := w.Header()
	for k, vv := range resp.Header {
		if hopHeaders[k] && k != "X-Forwarded-For" && k != "X-Forwarded-Host" && k != "X-Forwarded-Proto" {
			continue
		}
		h[k] = vv
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	if resp.ContentLength >= 0 && !bodyless(req.Method, resp.StatusCode) {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	h.Set("Slipway-Environment", b.env)
	h.Set("Slipway-Commit", r.rev.spec.Commit)
	w.WriteHeader(resp.StatusCode)
	buf := b.proxy.BufferPool.Get()
	defer b.proxy.BufferPool.Put(buf)
	stream := resp.ContentLength == -1 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var copyErr error
	if stream {
		rc := http.NewResponseController(w)
		for {
			n, rerr := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					copyErr = werr
					break
				}
				rc.Flush()
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				copyErr = rerr
				break
			}
		}
	} else {
		_, copyErr = io.CopyBuffer(writerOnly{w}, resp.Body, buf)
	}
	if copyErr != nil {
		resp.Body.Close()
		c.Close()
		return true, copyErr
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	resp.Body.Close()
	if resp.Close {
		c.Close()
	} else {
		r.conns.put(c)
	}
	return true, nil
}

func bodyless(method string, code int) bool {
	return method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
}

// writerOnly hides the ResponseWriter's ReadFrom, which would not use the
// pooled buffer.
type writerOnly struct{ io.Writer }

// roundTrip writes req on c and reads the replica's answer.
func (b *balancer) roundTrip(c *upConn, req *http.Request) (*http.Response, error) {
	bw := c.bw
	uri := req.RequestURI
	if uri == "" {
		uri = req.URL.RequestURI()
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")
	connTokens := req.Header["Connection"]
	for k, vv := range req.Header {
		if hopHeaders[k] || (len(connTokens) > 0 && headerHasToken(req.Header, "Connection", k)) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	client, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		client = req.RemoteAddr
	}
	bw.WriteString("X-Forwarded-For: ")
	if prior := req.Header["X-Forwarded-For"]; len(prior) > 0 {
		bw.WriteString(strings.Join(prior, ", "))
		bw.WriteString(", ")
	}
	bw.WriteString(client)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	if p := req.Header.Get("X-Forwarded-Proto"); p != "" {
		bw.WriteString(p)
	} else if req.TLS != nil {
		bw.WriteString("https")
	} else {
		bw.WriteString("http")
	}
	bw.WriteString("\r\n")
	hasBody := req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0
	switch {
	case !hasBody:
		if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
	case req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		if _, err := io.CopyN(bw, req.Body, req.ContentLength); err != nil {
			return nil, fmt.Errorf("send request body: %w", err)
		}
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.Copy(cw, req.Body); err != nil {
			return nil, fmt.Errorf("send request body: %w", err)
		}
		cw.Close()
		bw.WriteString("\r\n")
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		// Informational answers (100 Continue, 103 Early Hints) are
		// followed by the real one.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		return resp, nil
	}
}
