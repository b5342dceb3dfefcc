package local

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// frontend serves HTTP/1.1 to clients for the balancer: a lean loop per
// connection (read a request, forward it, write the answer) instead of
// net/http's server, which costs a goroutine wake-up and extra system calls
// per request. Upgrades are handed to the balancer with the connection.
type frontend struct {
	ln      net.Listener
	handler http.Handler

	mu      sync.Mutex
	conns   map[net.Conn]*atomic.Bool // → busy with a request
	closing atomic.Bool
	wg      sync.WaitGroup
}

const (
	frontIdleTimeout   = 2 * time.Minute
	frontHeaderTimeout = 10 * time.Second
)

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
)

func newFrontend(ln net.Listener, h http.Handler) *frontend {
	f := &frontend{ln: ln, handler: h, conns: map[net.Conn]*atomic.Bool{}}
	f.wg.Add(1)
	go f.accept()
	return f
}

func (f *frontend) accept() {
	defer f.wg.Done()
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return
		}
		busy := &atomic.Bool{}
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
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

func (f *frontend) serveConn(nc net.Conn, busy *atomic.Bool) {
	br := readerPool.Get().(*bufio.Reader)
	bw := writerPool.Get().(*bufio.Writer)
	br.Reset(nc)
	bw.Reset(nc)
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
			br.Reset(nil)
			bw.Reset(nil)
			readerPool.Put(br)
			writerPool.Put(bw)
		}
		f.wg.Done()
	}()
	tlsState, served := serveTLS(nc, f.handler, busy)
	if served {
		return
	}
	remote := nc.RemoteAddr().String()
	for !f.closing.Load() {
		nc.SetReadDeadline(time.Now().Add(frontIdleTimeout))
		if _, err := br.Peek(1); err != nil {
			return
		}
		busy.Store(true)
		nc.SetReadDeadline(time.Now().Add(frontHeaderTimeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			bw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nslipway: bad request\n")
			bw.Flush()
			return
		}
		nc.SetReadDeadline(time.Time{})
		req.RemoteAddr = remote
		req.TLS = tlsState
		w := &respWriter{bw: bw, req: req, header: http.Header{}, nc: nc, br: br}
		if req.ProtoMajor != 1 {
			w.close = true
		}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			req.Header.Del("Expect")
			bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			bw.Flush()
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
		// What the handler left of the request body must go before the
		// next request can be read.
		if req.Body != nil {
			n, _ := io.Copy(io.Discard, io.LimitReader(req.Body, 256<<10))
			if n == 256<<10 {
				return
			}
			req.Body.Close()
		}
		busy.Store(false)
		if w.close || req.Close {
			return
		}
	}
}

// respWriter writes one response on a client connection.
type respWriter struct {
	bw     *bufio.Writer
	br     *bufio.Reader
	nc     net.Conn
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

// Hijack hands the connection over (for upgrades).
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
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
	if w.remaining > 0 {
		w.close = true
	}
}
