package local

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The balancer forwards plain HTTP/1.1 requests itself, over its own pool of
// connections to each replica, on the goroutine that serves the request:
// no hand-off to transport goroutines per request. Upgrades (websockets) go
// through httputil.ReverseProxy instead.

// upConn is a connection to a replica.
type upConn struct {
	net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

// alive reports whether an idle connection is still open at the replica's
// end. A replica that closed it sent a FIN, which a peek that does not wait
// shows as end of file; bytes nobody asked for mean it is unusable too.
func (c *upConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN
		return true
	})
	return err == nil && alive
}

// connPool keeps idle connections to one replica.
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

const maxIdlePerReplica = 256

// upstreamIdleTimeout retires a pooled connection to a replica before the
// replica's own idle timeout would close it under a request (Go's servers
// are often set to a minute or two). A connection idle for more than
// checkIdleAfter is checked before it is used, for replicas that close
// sooner: under load connections are reused before that, so the check
// (a system call) is rarely made.
const (
	upstreamIdleTimeout = 30 * time.Second
	checkIdleAfter      = 50 * time.Millisecond
)

var dialer = &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}

func (p *connPool) get(addr string) (c *upConn, reused bool, err error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c = p.idle[n-1]
		p.idle = p.idle[:n-1]
		idle := time.Since(c.idleSince)
		var stale []*upConn
		if idle > upstreamIdleTimeout {
			// The rest have been idle longer still.
			stale = p.idle
			p.idle = nil
		}
		p.mu.Unlock()
		for _, s := range stale {
			s.Close()
		}
		if idle > upstreamIdleTimeout || (idle > checkIdleAfter && !c.alive()) {
			c.Close()
			continue
		}
		return c, true, nil
	}
	nc, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &upConn{Conn: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 8<<10)}, false, nil
}

func (p *connPool) put(c *upConn) {
	c.idleSince = time.Now()
	var stale *upConn
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdlePerReplica {
		p.mu.Unlock()
		c.Close()
		return
	}
	if len(p.idle) > 0 && c.idleSince.Sub(p.idle[0].idleSince) > upstreamIdleTimeout {
		stale = p.idle[0]
		p.idle = p.idle[1:]
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	if stale != nil {
		stale.Close()
	}
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
}

// notForwarded are request headers the balancer writes itself: the body's
// framing, and what it saw of the client.
var notForwarded = map[string]bool{
	"Content-Length": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	"Forwarded": true,
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
	var tried *backend
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
		if replicaFailed(err) {
			b.eject(r.name, err)
		}
		if !mayRetry(req, replayable, err) {
			break
		}
		tried = r
	}
	b.fail(w, req, lastErr)
}

// forward sends req to the backend r and copies the answer to w. wrote reports whether
// anything was written to w.
func (b *balancer) forward(w http.ResponseWriter, req *http.Request, r *backend, replayable bool) (wrote bool, err error) {
	c, reused, err := r.conns.get(r.addr)
	if err != nil {
		return false, err
	}
	resp, err := b.roundTrip(c, req)
	if err != nil && reused && replayable && idempotent(req.Method) && !isClientError(err) {
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
	connTokens := resp.Header["Connection"]
	for k, vv := range resp.Header {
		if hopHeaders[k] || (len(connTokens) > 0 && headerHasToken(resp.Header, "Connection", k)) {
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
	h.Set("Slipway-Commit", r.commit)
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
		// Closed before the body: closing the body first would read the
		// rest of it, which may never end.
		c.Close()
		resp.Body.Close()
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

func isClientError(err error) bool {
	var ce *clientError
	return errors.As(err, &ce)
}

func bodyless(method string, code int) bool {
	return method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
}

// writerOnly hides the ResponseWriter's ReadFrom, which would not use the
// pooled buffer.
type writerOnly struct{ io.Writer }

// roundTrip writes req on c and reads the replica's answer. A failure to
// read the request body from the client comes back as a *clientError.
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
		if hopHeaders[k] || notForwarded[k] || (len(connTokens) > 0 && headerHasToken(req.Header, "Connection", k)) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	fwd := b.forwarded(req)
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(fwd.For)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(fwd.Host)
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	bw.WriteString(fwd.Proto)
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
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	}
	if !hasBody {
		if err := bw.Flush(); err != nil {
			return nil, err
		}
		return readResponse(c, req)
	}
	if req.ContentLength > 0 && req.ContentLength <= smallBody {
		// Small enough to sit in the socket buffers: written before the
		// answer is read.
		if err := writeBody(bw, req); err != nil {
			if isClientError(err) {
				return nil, err
			}
			return earlyResponse(c, req, err)
		}
		return readResponse(c, req)
	}
	// A larger body is written while the answer is read: a replica may
	// answer (413, say) before it has taken all of it.
	wrote := make(chan error, 1)
	var answered atomic.Bool
	go func() {
		err := writeBody(bw, req)
		if err != nil && !answered.Load() {
			// The replica waits for the rest of the body: wake the
			// reader below.
			c.SetReadDeadline(time.Now())
		}
		wrote <- err
	}()
	resp, err := readResponse(c, req)
	answered.Store(true)
	if err != nil {
		c.Close() // stops the writer
		if werr := <-wrote; isClientError(werr) {
			return nil, werr
		}
		return nil, err
	}
	select {
	case werr := <-wrote:
		if werr != nil {
			resp.Close = true
		}
	default:
		// Answered before the whole body was sent: the connection
		// cannot carry another request, and the writer stops at its
		// next write.
		resp.Close = true
		c.SetWriteDeadline(time.Now())
		resp.Body = &afterWriter{ReadCloser: resp.Body, wrote: wrote}
	}
	return resp, nil
}

// smallBody is the largest request body written before the answer is read.
const smallBody = 64 << 10

// writeBody sends req's body (chunked when its length is unknown) and
// flushes.
func writeBody(bw *bufio.Writer, req *http.Request) error {
	if req.ContentLength > 0 {
		if _, err := io.CopyN(bw, req.Body, req.ContentLength); err != nil {
			return sendBodyError(err)
		}
	} else {
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.Copy(cw, req.Body); err != nil {
			return sendBodyError(err)
		}
		cw.Close()
		bw.WriteString("\r\n")
	}
	return bw.Flush()
}

func sendBodyError(err error) error {
	if isClientError(err) {
		return err
	}
	return fmt.Errorf("send request body: %w", err)
}

// afterWriter waits, when the response is done, for the writer of a
// request body that the replica answered before taking all of.
type afterWriter struct {
	io.ReadCloser
	wrote <-chan error
	once  sync.Once
}

func (a *afterWriter) Close() error {
	err := a.ReadCloser.Close()
	a.once.Do(func() { <-a.wrote })
	return err
}

// earlyResponse reads the answer a replica may have sent before it stopped
// taking the request body (writeErr); without one, writeErr stands.
func earlyResponse(c *upConn, req *http.Request, writeErr error) (*http.Response, error) {
	c.SetReadDeadline(time.Now().Add(time.Second))
	resp, err := readResponse(c, req)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, writeErr
	}
	resp.Close = true
	return resp, nil
}

// readResponse reads the replica's answer, skipping informational ones.
func readResponse(c *upConn, req *http.Request) (*http.Response, error) {
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

// forwardedFor is what the X-Forwarded-* headers to a replica say.
type forwardedFor struct{ For, Host, Proto string }

// forwarded says who the client is, which host it asked for and over what:
// as the balancer saw it, or, from a trusted proxy, as the proxy says.
func (b *balancer) forwarded(req *http.Request) forwardedFor {
	client, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		client = req.RemoteAddr
	}
	f := forwardedFor{For: client, Host: req.Host, Proto: "http"}
	if req.TLS != nil {
		f.Proto = "https"
	}
	if !b.trusts(client) {
		return f
	}
	if prior := req.Header["X-Forwarded-For"]; len(prior) > 0 {
		f.For = strings.Join(prior, ", ") + ", " + client
	}
	if h := req.Header.Get("X-Forwarded-Host"); h != "" {
		f.Host = h
	}
	if p := req.Header.Get("X-Forwarded-Proto"); p != "" {
		f.Proto = p
	}
	return f
}

// trusts reports whether ip is one of the configured proxies.
func (b *balancer) trusts(ip string) bool {
	trusted := b.trusted.Load()
	if trusted == nil || len(*trusted) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range *trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
