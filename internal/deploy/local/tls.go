package local

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
	"golang.org/x/net/http2"

	"slipway.dev/slipway/internal/deploy"
)

// tlsListener is the load balancer's listener when the environment serves
// HTTPS. Accept wraps each connection in TLS without a handshake: that
// happens in the connection's own goroutine (serveTLS), so a slow client
// cannot hold up the accept loop. It also owns what lives as long as the
// listener: the HTTP/2 server, the plain-HTTP redirect listener and the
// ACME certificate manager.
type tlsListener struct {
	net.Listener
	spec    deploy.TLS
	config  *tls.Config
	timeout time.Duration // for the handshake

	h2     *http2.Server
	h2Base *http.Server // h2's settings; shutting it down sends GOAWAY

	redirect *http.Server // nil without RedirectFrom

	stop      context.CancelFunc // ends certificate fetches started here
	closed    atomic.Bool
	closeOnce sync.Once
}

// tlsConn is a client connection accepted by a tlsListener.
type tlsConn struct {
	*tls.Conn
	l *tlsListener
}

// certSource gives the certificate for a handshake.
type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// withTLS wraps ln, the load balancer's new listener, to serve HTTPS when
// fe.TLS is set; otherwise it returns ln as it is. On error ln is closed.
func (s *supervisor) withTLS(ln net.Listener, fe deploy.Frontend) (net.Listener, error) {
	if fe.TLS == nil {
		return ln, nil
	}
	// A redirect listener on the same address in use must give the
	// address up first.
	freeRedirect := func() {}
	if old, ok := s.lbLn.(*tlsListener); ok && old.spec.RedirectFrom == fe.TLS.RedirectFrom {
		freeRedirect = old.closeRedirect
	}
	l, err := newTLSListener(ln, fe, s.dir, s.logger, freeRedirect)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return l, nil
}

// releaseForTLS closes the listener in use when the new one is for the same
// address and only TLS settings changed, so the address is free to bind
// again; connections open on it go on until the old frontend shuts down.
// It first checks that the new certificates load, so that a mistake in
// them leaves the old listener serving.
func (s *supervisor) releaseForTLS(addr string, fe deploy.Frontend) error {
	if s.lbLn == nil || addr != s.lbAddr {
		return nil
	}
	if t := fe.TLS; t != nil {
		var err error
		if len(t.ACMEDomains) > 0 {
			_, err = newACMEManager(s.dir, *t)
		} else {
			_, err = loadFileCerts(t.CertFile, t.KeyFile, s.logger)
		}
		if err != nil {
			return err
		}
	}
	s.lbLn.Close()
	return nil
}

// sameTLS reports whether ln already serves with the TLS settings t (nil:
// plain HTTP).
func sameTLS(ln net.Listener, t *deploy.TLS) bool {
	l, ok := ln.(*tlsListener)
	if !ok || t == nil {
		return !ok && t == nil
	}
	a, _ := json.Marshal(l.spec)
	b, _ := json.Marshal(*t)
	return string(a) == string(b)
}

// lbURL is the environment's URL for status: https:// and the first ACME
// domain (or the address) when it serves TLS.
func lbURL(ln net.Listener) string {
	l, ok := ln.(*tlsListener)
	if !ok {
		return "http://" + urlHost(ln.Addr())
	}
	host, port, _ := net.SplitHostPort(urlHost(ln.Addr()))
	if len(l.spec.ACMEDomains) > 0 {
		host = l.spec.ACMEDomains[0]
	}
	if port == "443" {
		return "https://" + host
	}
	return "https://" + net.JoinHostPort(host, port)
}

func portOf(a net.Addr) string {
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return ""
	}
	return port
}

// newTLSListener serves HTTPS on ln with fe's settings; dir is the
// environment's directory (for ACME's files). freeRedirect is called just
// before the redirect listener binds, for a previous one on the same
// address to let go of it.
func newTLSListener(ln net.Listener, fe deploy.Frontend, dir string, logger *slog.Logger, freeRedirect func()) (*tlsListener, error) {
	t := *fe.TLS
	ctx, stop := context.WithCancel(context.Background())
	l := &tlsListener{Listener: ln, spec: t, timeout: fe.HeaderTimeout, stop: stop}
	if l.timeout <= 0 {
		l.timeout = 10 * time.Second
	}
	var certs certSource
	var m *autocert.Manager
	protos := []string{"h2", "http/1.1"}
	if len(t.ACMEDomains) > 0 {
		var err error
		if m, err = newACMEManager(dir, t); err != nil {
			stop()
			return nil, err
		}
		certs = m
		protos = append(protos, acme.ALPNProto)
	} else {
		fc, err := loadFileCerts(t.CertFile, t.KeyFile, logger)
		if err != nil {
			stop()
			return nil, err
		}
		certs = fc
	}
	l.config = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
		GetCertificate: certs.GetCertificate,
	}
	quiet := log.New(io.Discard, "", 0)
	l.h2Base = &http.Server{MaxHeaderBytes: fe.MaxHeaderBytes, IdleTimeout: fe.IdleTimeout, ErrorLog: quiet}
	l.h2 = &http2.Server{IdleTimeout: fe.IdleTimeout}
	if err := http2.ConfigureServer(l.h2Base, l.h2); err != nil {
		stop()
		return nil, fmt.Errorf("load balancer: HTTP/2: %w", err)
	}
	if t.RedirectFrom != "" {
		freeRedirect()
		rln, err := net.Listen("tcp", t.RedirectFrom)
		if err != nil {
			stop()
			return nil, fmt.Errorf("load balancer: listen on %s for redirects to HTTPS: %w (choose another redirectFrom, or stop what uses it)", t.RedirectFrom, err)
		}
		h := redirectToHTTPS(portOf(ln.Addr()))
		if m != nil {
			h = withoutPort(m.HTTPHandler(h)) // HTTP-01 challenges, and from now on tried too
		}
		l.redirect = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: l.timeout,
			IdleTimeout:       fe.IdleTimeout,
			MaxHeaderBytes:    fe.MaxHeaderBytes,
			ErrorLog:          quiet,
		}
		go l.redirect.Serve(rln)
	}
	if m != nil {
		go prefetch(ctx, m, t.ACMEDomains, logger)
	}
	return l, nil
}

// Accept returns the next connection, wrapped in TLS but not yet
// handshaken.
func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.config), l: l}, nil
}

// Close stops accepting, asks HTTP/2 clients to go away once their
// requests are done, stops the redirect listener and any certificate fetch
// started here.
func (l *tlsListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		l.stop()
		l.h2Base.Shutdown(context.Background()) // returns at once: it serves no listener
		l.closeRedirect()
	})
	return err
}

func (l *tlsListener) closeRedirect() {
	if l.redirect == nil {
		return
	}
	srv := l.redirect
	srv.SetKeepAlivesEnabled(false)
	// Close the listener at once, so that its address can be bound again,
	// and let answers in flight finish.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// serveTLS completes the handshake of a connection accepted by a
// tlsListener, within the header timeout, in the connection's goroutine.
// HTTP/2 connections are served here with h, and TLS-ALPN-01 challenge
// connections end with their handshake: done is true and the connection
// is finished with. For HTTP/1.1 it returns the connection's TLS state, for
// the requests read from it. Plain connections are left alone.
func serveTLS(nc net.Conn, h http.Handler, busy *atomic.Bool) (state *tls.ConnectionState, done bool) {
	tc, ok := nc.(*tlsConn)
	if !ok {
		return nil, false
	}
	tc.SetDeadline(time.Now().Add(tc.l.timeout))
	if err := tc.Handshake(); err != nil {
		return nil, true
	}
	tc.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	switch cs.NegotiatedProtocol {
	case acme.ALPNProto:
		return nil, true
	case "h2":
		if tc.l.closed.Load() {
			return nil, true
		}
		// Busy for its whole life: the frontend's shutdown must not cut
		// it while idle; GOAWAY from Close ends it instead.
		busy.Store(true)
		tc.l.h2.ServeConn(tc.Conn, &http2.ServeConnOpts{BaseConfig: tc.l.h2Base, Handler: h})
		return nil, true
	}
	return &cs, false
}

// redirectToHTTPS answers every request with a permanent redirect to the
// same URL over HTTPS on port (omitted when 443). 308 keeps the method and
// body.
func redirectToHTTPS(port string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "slipway: a request without a Host cannot be redirected to HTTPS", http.StatusBadRequest)
			return
		}
		if port != "443" && port != "" {
			host = net.JoinHostPort(host, port)
		} else if net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
			host = "[" + host + "]"
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// withoutPort drops the port from requests' Host, which autocert checks
// against the domains as it is (a challenge on a port other than 80
// carries one).
func withoutPort(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r.Host = host
		}
		h.ServeHTTP(w, r)
	})
}
