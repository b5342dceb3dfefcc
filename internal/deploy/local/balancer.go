package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/config"
)

// errNoReplica means no replica of the environment is ready.
var errNoReplica = errors.New("no replica is ready")

// maxRetryBody is the largest request body kept in memory so that a failed
// idempotent request can be sent again to another replica.
const maxRetryBody = 64 << 10

// balancer is an environment's HTTP load balancer: it sends each request to
// the ready backend with the fewest requests in flight.
type balancer struct {
	env   string
	clock clock
	// pool is what pick chooses from: the backends that are ready and not
	// draining, computed under mu whenever one of them changes.
	pool      atomic.Pointer[[]*backend]
	next      atomic.Uint64
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	// trusted are the proxies whose X-Forwarded-* headers are kept.
	trusted atomic.Pointer[[]netip.Prefix]
	// eject tells the owner of a backend (by its name) that a connection
	// to it failed: the owner takes it out of the pool with setReady.
	eject func(name string, err error)

	// stopped, when set, is what every request is answered with (503):
	// the environment was stopped.
	stopped atomic.Pointer[string]

	mu       sync.Mutex
	backends []*backend
}

// backend is one replica as the balancer sees it: where it listens, the
// commit it answers for, its requests in flight and its pooled connections.
type backend struct {
	name   string // the owner's, reported when the backend is ejected
	addr   string
	commit string // sent as Slipway-Commit with its answers

	outstanding atomic.Int64
	// draining is set once and for all by drain or remove: the backend is
	// picked no more.
	draining atomic.Bool
	conns    connPool

	ready bool // guarded by the balancer's mu
}

// drainPoll is how often waitDrained looks at a draining backend's
// requests in flight.
const drainPoll = 5 * time.Millisecond

func newBalancer(env string, clk clock, eject func(name string, err error)) *balancer {
	b := &balancer{env: env, clock: clk, eject: eject}
	empty := []*backend{}
	b.pool.Store(&empty)
	b.transport = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       60 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "replica" // the transport picks the replica
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del("Forwarded")
			f := b.forwarded(pr.In)
			pr.Out.Header.Set("X-Forwarded-For", f.For)
			pr.Out.Header.Set("X-Forwarded-Host", f.Host)
			pr.Out.Header.Set("X-Forwarded-Proto", f.Proto)
		},
		Transport:    (*pickingTransport)(b),
		BufferPool:   bufferPool{},
		ErrorLog:     log.New(io.Discard, "", 0),
		ErrorHandler: b.fail,
	}
	return b
}

// add makes the backend of the replica name listening on addr, which
// serves commit. It is not picked until setReady says it is ready.
func (b *balancer) add(name, addr, commit string) *backend {
	be := &backend{name: name, addr: addr, commit: commit}
	b.mu.Lock()
	b.backends = append(b.backends, be)
	b.mu.Unlock()
	return be
}

// setReady puts be in the pool, or takes it out; a draining backend stays
// out either way.
func (b *balancer) setReady(be *backend, ready bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if be.ready == ready {
		return
	}
	be.ready = ready
	b.updatePool()
}

// drain stops picking be for good; the requests it has in flight go on
// (waitDrained waits for them). It reports false if be was draining
// already.
func (b *balancer) drain(be *backend) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if be.draining.Swap(true) {
		return false
	}
	b.updatePool()
	return true
}

// waitDrained waits until be, draining, has no request in flight, or until
// grace has passed, and reports whether it got there.
func (b *balancer) waitDrained(be *backend, grace time.Duration) bool {
	deadline := b.clock.Now().Add(grace)
	for be.outstanding.Load() > 0 {
		if !b.clock.Now().Before(deadline) {
			return false
		}
		<-b.clock.After(drainPoll)
	}
	return true
}

// remove forgets be and closes its pooled connections, and any given back
// to it later by requests still in flight.
func (b *balancer) remove(be *backend) {
	b.mu.Lock()
	be.draining.Store(true)
	b.backends = slices.DeleteFunc(b.backends, func(x *backend) bool { return x == be })
	b.updatePool()
	b.mu.Unlock()
	be.conns.close()
	b.transport.CloseIdleConnections()
}

// updatePool publishes the backends that may be picked: ready and not
// draining, in the order they were added; b.mu is held.
func (b *balancer) updatePool() {
	var pool []*backend
	for _, be := range b.backends {
		if be.ready && !be.draining.Load() {
			pool = append(pool, be)
		}
	}
	b.pool.Store(&pool)
}

// setTrusted sets the proxies whose X-Forwarded-* headers are kept;
// entries that do not parse were refused by validation and are left out.
func (b *balancer) setTrusted(proxies []string) {
	var ps []netip.Prefix
	for _, s := range proxies {
		if p, err := config.ParseTrustedProxy(s); err == nil {
			ps = append(ps, p)
		}
	}
	b.trusted.Store(&ps)
}

// setStopped has every request answered 503 with a text saying that app's
// environment is stopped and how to start it; with app "" it serves again.
func (b *balancer) setStopped(app string) {
	if app == "" {
		b.stopped.Store(nil)
		return
	}
	msg := fmt.Sprintf("slipway: environment %s of %s is stopped; start it with: slipway start %s --app %s\n", b.env, app, b.env, app)
	b.stopped.Store(&msg)
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if msg := b.stopped.Load(); msg != nil {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Slipway-Environment", b.env)
		h.Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, *msg)
		return
	}
	if req.Body != nil && req.Body != http.NoBody {
		if _, ok := req.Body.(*clientBody); !ok {
			// From the HTTP/2 server: failures to read it are the
			// client's too, whatever error that server gives.
			req.Body = &clientBody{rc: req.Body}
		}
	}
	if idempotent(req.Method) && req.ContentLength > 0 && req.ContentLength <= maxRetryBody {
		buf, err := io.ReadAll(io.LimitReader(req.Body, maxRetryBody+1))
		req.Body.Close()
		if err != nil {
			b.fail(w, req, &clientError{err})
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(buf))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	}
	if isUpgrade(req) {
		b.proxy.ServeHTTP(w, req)
		return
	}
	b.serve(w, req)
}

// fail answers a request that got no answer from a replica. The text says
// what went wrong in general terms only: the details (the replicas'
// addresses among them) are for status, not for clients.
func (b *balancer) fail(w http.ResponseWriter, req *http.Request, err error) {
	if req.Context().Err() != nil {
		return // the client went away
	}
	w.Header().Set("Slipway-Environment", b.env)
	code, what := http.StatusBadGateway, "the replica failed to answer"
	switch {
	case errors.Is(err, errNoReplica):
		code, what = http.StatusServiceUnavailable, "no replica is ready"
	case isClientError(err):
		code, what = http.StatusBadRequest, "the request body could not be read"
		w.Header().Set("Connection", "close")
	}
	http.Error(w, fmt.Sprintf("slipway: environment %s: %s", b.env, what), code)
}

// pick returns the ready backend with the fewest requests in flight, other
// than exclude, with its count already raised; nil when there is none.
func (b *balancer) pick(exclude *backend) *backend {
	for range 4 {
		pool := *b.pool.Load()
		n := len(pool)
		if n == 0 {
			return nil
		}
		start := int(b.next.Add(1) % uint64(n))
		var best *backend
		var least int64
		for i := range n {
			be := pool[(start+i)%n]
			if be == exclude {
				continue
			}
			if o := be.outstanding.Load(); best == nil || o < least {
				best, least = be, o
			}
		}
		if best == nil {
			return nil
		}
		best.outstanding.Add(1)
		if best.draining.Load() {
			// It left the pool since the snapshot: its drain may
			// already have seen zero requests in flight.
			best.outstanding.Add(-1)
			continue
		}
		return best
	}
	return nil
}

type pickingTransport balancer

func (t *pickingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	b := (*balancer)(t)
	r := b.pick(nil)
	if r == nil {
		return nil, errNoReplica
	}
	replayable := replayable(req)
	first := req
	if replayable && req.GetBody != nil {
		first = req.Clone(req.Context())
		first.Body, _ = req.GetBody()
	}
	first.URL.Host = r.addr
	resp, err := b.transport.RoundTrip(first)
	if err != nil {
		r.outstanding.Add(-1)
		if replicaFailed(err) {
			b.eject(r.name, err)
		}
		if !mayRetry(req, replayable, err) {
			return nil, err
		}
		r2 := b.pick(r)
		if r2 == nil {
			return nil, err
		}
		again := req.Clone(req.Context())
		if req.GetBody != nil {
			again.Body, _ = req.GetBody()
		}
		again.URL.Host = r2.addr
		r = r2
		resp, err = b.transport.RoundTrip(again)
		if err != nil {
			r.outstanding.Add(-1)
			if replicaFailed(err) {
				b.eject(r.name, err)
			}
			return nil, err
		}
	}
	resp.Header.Set("Slipway-Environment", b.env)
	resp.Header.Set("Slipway-Commit", r.commit)
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &countedConn{ReadWriteCloser: rwc, r: r}
	} else {
		resp.Body = &countedBody{ReadCloser: resp.Body, r: r}
	}
	return resp, nil
}

// countedBody lowers its backend's in-flight count when the response is done.
type countedBody struct {
	io.ReadCloser
	r    *backend
	done atomic.Bool
}

func (c *countedBody) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.r.outstanding.Add(-1)
	}
	return c.ReadCloser.Close()
}

// countedConn is an upgraded (websocket) connection to a backend.
type countedConn struct {
	io.ReadWriteCloser
	r    *backend
	done atomic.Bool
}

func (c *countedConn) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.r.outstanding.Add(-1)
	}
	return c.ReadWriteCloser.Close()
}

// replayable reports whether req's body can be sent again: it has none, or
// ServeHTTP kept a copy (GetBody).
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 || req.GetBody != nil
}

// mayRetry reports whether req, which failed on one replica with err, may
// go to another: its body can be sent again, and it is idempotent or never
// reached the replica, and the client is still there.
func mayRetry(req *http.Request, replayable bool, err error) bool {
	return replayable && !isClientError(err) && (idempotent(req.Method) || dialFailed(err)) && req.Context().Err() == nil
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// dialFailed reports whether the request never reached the replica.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// replicaFailed reports whether err says the replica could not be reached
// or dropped the connection while answering: the replica's fault, not the
// client's (a body it failed to send) nor this machine's (out of file
// descriptors).
func replicaFailed(err error) bool {
	if errors.Is(err, context.Canceled) || isClientError(err) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return false
	}
	return dialFailed(err) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

type bufferPool struct{}

var buffers = make(chan []byte, 256)

func (bufferPool) Get() []byte {
	select {
	case b := <-buffers:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (bufferPool) Put(b []byte) {
	select {
	case buffers <- b:
	default:
	}
}
