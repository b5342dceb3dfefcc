package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// frontend serves HTTP/1.1 to clients for the balancer: a lean loop per
// connection (read a request, forward it, write the answer) instead of
// net/http's server, which costs a goroutine wake-up and extra system calls
// per request. Upgrades are handed to the balancer with the connection.
//
// Its input policy is where client bytes enter: every request is checked as
// net/http's server checks it (see admit), the request head is bounded in
// size and time, a body in time between reads, a response in time between
// writes, and the number of connections is capped.
type frontend struct {
	ln      net.Listener
	handler http.Handler
	limits  atomic.Pointer[deploy.Frontend]

	mu      sync.Mutex
	conns   map[net.Conn]*atomic.Bool // → busy with a request
	closing atomic.Bool
	wg      sync.WaitGroup

	// acceptErr is the error of the last accept while accepting fails;
	// nil once a connection was accepted again.
	acceptErr atomic.Pointer[acceptFailure]
}

type acceptFailure struct {
	err   error
	since time.Time
}

// limitSlack is what a request head may exceed MaxHeaderBytes by, as in
// net/http's server, so that both refuse the same requests.
const limitSlack = 4096

// maxBodyDrain is how much of a request body the handler left unread is
// read and dropped so the connection can serve the next request; a longer
// rest closes the connection instead.
const maxBodyDrain = 256 << 10

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
)

func newFrontend(ln net.Listener, h http.Handler, limits deploy.Frontend) *frontend {
	f := &frontend{ln: ln, handler: h, conns: map[net.Conn]*atomic.Bool{}}
	f.setLimits(limits)
	f.wg.Add(1)
	go f.accept()
	return f
}

// setLimits changes the limits for requests read from now on.
func (f *frontend) setLimits(l deploy.Frontend) {
	l = deploy.Spec{Frontend: l}.WithDefaults().Frontend
	f.limits.Store(&l)
}

// problem says why the front end cannot serve, or "" when it can.
func (f *frontend) problem() string {
	if a := f.acceptErr.Load(); a != nil {
		return fmt.Sprintf("load balancer cannot accept connections since %s: %v", a.since.UTC().Format(time.TimeOnly), a.err)
	}
	return ""
}

// overloadAnswer goes to a connection beyond the limit before it is closed.
const overloadAnswer = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 39\r\n\r\nslipway: too many connections, retry.\r\n"

func (f *frontend) accept() {
	defer f.wg.Done()
	var delay time.Duration
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			if f.closing.Load() || errors.Is(err, net.ErrClosed) {
				return // shut down, or its listener handed over
			}
			// Out of file descriptors, a reset before accept: none of
			// them may end the loop for good.
			if f.acceptErr.Load() == nil {
				f.acceptErr.Store(&acceptFailure{err: err, since: time.Now()})
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else {
				delay = min(2*delay, time.Second)
			}
			time.Sleep(delay)
			continue
		}
		if delay != 0 {
			delay = 0
			f.acceptErr.Store(nil)
		}
		maxConns := f.limits.Load().MaxConnections
		busy := &atomic.Bool{}
		f.mu.Lock()
		if f.closing.Load() || len(f.conns) >= maxConns {
			f.mu.Unlock()
			if !f.closing.Load() && refusers.TryAcquire() {
				go func() {
					defer refusers.Release()
					nc.SetWriteDeadline(time.Now().Add(time.Second))
					io.WriteString(nc, overloadAnswer)
					lingerClose(nc)
				}()
				continue
			}
			nc.Close()
			continue
		}
		f.conns[nc] = busy
		f.wg.Add(1)
		f.mu.Unlock()
		go f.serveConn(nc, busy)
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish until ctx ends, then closes what is left.
func (f *frontend) Shutdown(ctx context.Context) error {
	f.closing.Store(true)
	f.ln.Close()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		f.mu.Lock()
		for nc, busy := range f.conns {
			if !busy.Load() {
				nc.SetReadDeadline(time.Now()) // wakes the idle reader
			}
		}
		f.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			f.mu.Lock()
			for nc := range f.conns {
				nc.Close()
			}
			f.mu.Unlock()
			<-done
			return ctx.Err()
		case <-t.C:
		}
	}
}

// refusers bounds the connections over the limit that are being answered
// at once; beyond it they are closed without an answer.
var refusers = newSemaphore(64)

type semaphore chan struct{}

func newSemaphore(n int) semaphore { return make(semaphore, n) }

func (s semaphore) TryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s semaphore) Release() { <-s }

// lingerClose closes a connection whose client may still be sending, after
// its answer: closing with unread bytes would reset the connection and
// could lose the answer on the way. It stops sending, reads what comes for
// a short while, then closes, as net/http's server does.
func lingerClose(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.CloseWrite()
		nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, nc, 256<<10)
	}
	nc.Close()
}

// connReader is what a client connection's bufio.Reader reads from. While
// a request head is read it counts the bytes against the head limit and
// keeps a copy of its first maxRecord bytes (admit needs to see the head as
// sent); while a body is read each read waits at most the body timeout.
type connReader struct {
	nc      net.Conn
	pending []byte // read while idle, before the buffer was taken
	remain  int64  // bytes the head may still take; < 0: no limit
	hit     bool   // the head limit was reached
	record  bool
	head    []byte
	timeout time.Duration // for each read; 0: deadlines are set outside
	armed   time.Time     // when the read deadline was last pushed out
}

func (c *connReader) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.remain >= 0 {
		if c.remain == 0 {
			c.hit = true
			return 0, io.EOF
		}
		if int64(len(p)) > c.remain {
			p = p[:c.remain]
		}
	}
	if c.timeout > 0 {
		// Push the deadline out when an eighth of it has gone by, not
		// at each read: a slow client still gets the whole timeout,
		// give or take an eighth.
		if now := time.Now(); now.Sub(c.armed) > c.timeout/8 {
			c.nc.SetReadDeadline(now.Add(c.timeout))
			c.armed = now
		}
	}
	n, err := c.nc.Read(p)
	if c.remain >= 0 {
		c.remain -= int64(n)
	}
	if c.record && len(c.head) < maxRecord {
		c.head = append(c.head, p[:min(n, maxRecord-len(c.head))]...)
	}
	return n, err
}

// maxRecord is as much of a request head as is kept for admit: a Host
// header further in than this is not seen, and an absolute-form request
// that needs it is refused (stricter than net/http, never weaker).
const maxRecord = 64 << 10

// connWriter is what a client connection's bufio.Writer writes to: each
// write waits at most the write timeout for the client to take the bytes.
type connWriter struct {
	nc      net.Conn
	timeout time.Duration
	armed   time.Time
}

func (c *connWriter) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		if now := time.Now(); now.Sub(c.armed) > c.timeout/8 {
			c.nc.SetWriteDeadline(now.Add(c.timeout))
			c.armed = now
		}
	}
	return c.nc.Write(p)
}

// connState is what one client connection keeps between requests. Its
// buffers come from pools while it is busy or was busy a moment ago; an
// idle connection gives them back, so that many idle connections cost
// little more than their goroutines.
type connState struct {
	cr  connReader
	cw  connWriter
	br  *bufio.Reader
	bw  *bufio.Writer
	one [1]byte
}

// hotIdle is how long a connection keeps its buffers while waiting for
// its next request.
const hotIdle = time.Second

func (cs *connState) acquire() {
	if cs.br == nil {
		cs.br = readerPool.Get().(*bufio.Reader)
		cs.br.Reset(&cs.cr)
		cs.bw = writerPool.Get().(*bufio.Writer)
		cs.bw.Reset(&cs.cw)
	}
}

func (cs *connState) release() {
	if cs.br != nil {
		cs.br.Reset(nil)
		readerPool.Put(cs.br)
		cs.bw.Reset(nil)
		writerPool.Put(cs.bw)
		cs.br, cs.bw = nil, nil
	}
}

// waitForRequest waits until the client sends the first byte of a request
// or the connection has been idle until deadline; it reports whether a
// request has begun, with the buffers acquired.
func (cs *connState) waitForRequest(deadline time.Time) bool {
	nc := cs.cr.nc
	if cs.br != nil {
		if cs.br.Buffered() > 0 {
			return true // pipelined
		}
		hot := time.Now().Add(hotIdle)
		if deadline.Before(hot) {
			hot = deadline
		}
		nc.SetReadDeadline(hot)
		_, err := cs.br.Peek(1)
		if err == nil {
			return true
		}
		if !isTimeout(err) || !time.Now().Before(deadline) {
			return false
		}
		cs.release()
	}
	nc.SetReadDeadline(deadline)
	n, _ := nc.Read(cs.one[:])
	if n == 0 {
		return false
	}
	cs.cr.pending = cs.one[:n]
	cs.acquire()
	cs.br.Peek(1) // the byte into the buffer, where the head limit counts it
	return true
}

var connStatePool = sync.Pool{New: func() any { return new(connState) }}

func (f *frontend) serveConn(nc net.Conn, busy *atomic.Bool) {
	cs := connStatePool.Get().(*connState)
	cs.cr = connReader{nc: nc, remain: -1, head: cs.cr.head[:0]}
	cs.cw = connWriter{nc: nc}
	hijacked := false
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			panic(p)
		}
		f.mu.Lock()
		delete(f.conns, nc)
		f.mu.Unlock()
		if !hijacked {
			nc.Close()
			cs.release()
			if cap(cs.cr.head) > 64<<10 {
				cs.cr.head = nil
			}
			cs.cr.nc, cs.cw.nc = nil, nil
			connStatePool.Put(cs)
		}
		f.wg.Done()
	}()
	tlsState, served := serveTLS(nc, f.handler, busy)
	if served {
		return
	}
	remote := nc.RemoteAddr().String()
	lastMethod := ""
	for first := true; !f.closing.Load(); first = false {
		lim := f.limits.Load()
		cs.cw.timeout = lim.WriteTimeout
		cs.cr.timeout = 0
		// A new connection has the header timeout to send its first
		// request, as with net/http; a kept-alive one, the idle timeout.
		wait := lim.IdleTimeout
		if first {
			wait = lim.HeaderTimeout
		}
		if !cs.waitForRequest(time.Now().Add(wait)) {
			return
		}
		br, bw := cs.br, cs.bw
		busy.Store(true)
		nc.SetReadDeadline(time.Now().Add(lim.HeaderTimeout))
		if lastMethod == http.MethodPost {
			// Tolerance for old clients that end a POST body with an
			// extra line break, as net/http's server has.
			for range 2 {
				if b, err := br.Peek(1); err != nil || (b[0] != '\r' && b[0] != '\n') {
					break
				}
				br.Discard(1)
			}
		}
		// The head limit counts from here, bytes already buffered
		// included, as net/http's server counts them.
		buffered := br.Buffered()
		cs.cr.remain = int64(lim.MaxHeaderBytes) + limitSlack - int64(buffered)
		peek, _ := br.Peek(buffered)
		cs.cr.head = append(cs.cr.head[:0], peek...)
		cs.cr.record = true
		req, err := http.ReadRequest(br)
		cs.cr.record = false
		if err == nil {
			if code, why := admit(req, cs.cr.head); code != 0 {
				refuse(bw, code, why)
				lingerClose(nc)
				return
			}
		} else {
			switch {
			case cs.cr.hit:
				refuse(bw, http.StatusRequestHeaderFieldsTooLarge, "")
			case isUnsupportedTE(err):
				refuse(bw, http.StatusNotImplemented, "Unsupported transfer encoding")
			case err == io.EOF, errors.Is(err, net.ErrClosed), isTimeout(err):
				// The client went away or stalled: nobody to answer.
				// (A head cut short is answered, as net/http does.)
				return
			default:
				refuse(bw, http.StatusBadRequest, "")
			}
			cs.cr.remain = -1
			lingerClose(nc)
			return
		}
		cs.cr.remain = -1
		lastMethod = req.Method
		// The body is read with a timeout between reads, not as a whole.
		nc.SetReadDeadline(time.Time{})
		cs.cr.timeout, cs.cr.armed = lim.BodyTimeout, time.Time{}
		req.RemoteAddr = remote
		req.TLS = tlsState
		var body *clientBody
		if req.Body != nil && req.Body != http.NoBody {
			body = &clientBody{rc: req.Body}
			req.Body = body
		}
		w := &respWriter{bw: bw, req: req, header: http.Header{}, nc: nc, br: br, cs: cs}
		if expectsContinue(req) {
			req.Header.Del("Expect")
			if body != nil {
				body.continueTo = bw
			}
		}
		f.handler.ServeHTTP(w, req)
		if w.hijacked {
			hijacked = true
			return
		}
		w.finish()
		if err := bw.Flush(); err != nil {
			return
		}
		if body != nil {
			if body.err != nil {
				// What follows a broken body cannot be told apart
				// from a next request.
				return
			}
			if body.continueTo != nil {
				// 100 Continue was never sent, so the client may
				// not send the body: the connection cannot be
				// read on.
				w.close = true
			} else if !body.eof {
				n, err := io.Copy(io.Discard, io.LimitReader(body, maxBodyDrain))
				if err != nil || n == maxBodyDrain {
					lingerClose(nc)
					return
				}
			}
		}
		busy.Store(false)
		if w.close || req.Close {
			return
		}
	}
}

// refuse answers a request that is not forwarded, as net/http's server
// answers it, and leaves the connection to be closed.
func refuse(bw *bufio.Writer, code int, why string) {
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	if why != "" && code != http.StatusNotImplemented {
		text += ": " + why
	}
	bw.WriteString("HTTP/1.1 " + text + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
	if code == http.StatusNotImplemented {
		bw.WriteString(why)
	} else {
		bw.WriteString(text)
	}
	bw.Flush()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isUnsupportedTE reports whether http.ReadRequest refused a transfer
// coding it does not implement. Its error type is not exported, so its
// text is the only thing to go by.
func isUnsupportedTE(err error) bool {
	return strings.Contains(err.Error(), "unsupported transfer encoding")
}

func expectsContinue(req *http.Request) bool {
	return strings.EqualFold(req.Header.Get("Expect"), "100-continue")
}

// clientError is a failure to read the request from the client: the
// client's fault, never the replica's.
type clientError struct{ err error }

func (e *clientError) Error() string { return "read request body: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// clientBody is a request body as the client sends it.
type clientBody struct {
	rc  io.ReadCloser
	err error // the first failure to read it, the client's fault
	eof bool
	// continueTo, until the body is first read, is where 100 Continue
	// goes: the client asked to be told before sending the body.
	continueTo *bufio.Writer
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.continueTo != nil {
		b.continueTo.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		err := b.continueTo.Flush()
		b.continueTo = nil
		if err != nil {
			b.err = &clientError{err}
			return 0, b.err
		}
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = &clientError{err}
		err = b.err
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

// respWriter writes one response on a client connection.
type respWriter struct {
	bw     *bufio.Writer
	br     *bufio.Reader
	nc     net.Conn
	cs     *connState
	req    *http.Request
	header http.Header

	wroteHeader bool
	status      int
	chunked     bool
	noBody      bool
	remaining   int64 // of a declared Content-Length, -1 when none
	close       bool
	hijacked    bool
}

func (w *respWriter) Header() http.Header { return w.header }

func (w *respWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.header
	w.remaining = -1
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.remaining = n
		} else {
			h.Del("Content-Length")
		}
	}
	if !w.noBody && w.remaining < 0 {
		if w.req.ProtoAtLeast(1, 1) {
			w.chunked = true
		} else {
			w.close = true
		}
	}
	if w.close || w.req.Close {
		h.Set("Connection", "close")
	}
	bw := w.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || k == "Transfer-Encoding" {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(time.Now().UTC().Format(http.TimeFormat))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		if w.header.Get("Content-Type") == "" {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.chunked {
		w.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.bw.WriteString("\r\n")
		n, err := w.bw.Write(p)
		w.bw.WriteString("\r\n")
		return n, err
	}
	if w.remaining >= 0 {
		if int64(len(p)) > w.remaining {
			return 0, errors.New("response longer than its Content-Length")
		}
		w.remaining -= int64(len(p))
	}
	return w.bw.Write(p)
}

func (w *respWriter) Flush() { w.bw.Flush() }

func (w *respWriter) FlushError() error { return w.bw.Flush() }

// Hijack hands the connection over (for upgrades), with no deadlines: an
// upgraded connection may be quiet for as long as its two ends like.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	w.cs.cr.timeout, w.cs.cw.timeout = 0, 0
	w.nc.SetDeadline(time.Time{})
	return w.nc, bufio.NewReadWriter(w.br, w.bw), nil
}

// finish ends the response: the last chunk and trailers, or the connection
// when the body came up short.
func (w *respWriter) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.bw.WriteString("0\r\n")
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vv {
					w.bw.WriteString(name + ": " + v + "\r\n")
				}
			}
		}
		w.bw.WriteString("\r\n")
	}
	if !w.noBody && w.remaining > 0 {
		w.close = true
	}
}
