// Package server is the service's HTTP interface: the /hello API, the
// operations endpoints, request logs and metrics.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"example.com/birthday-app/internal/birthday"
)

// MaxBodyBytes is the largest PUT body accepted.
const MaxBodyBytes = 1024

// Store is the storage the server needs. Get returns an error matching
// ErrNotFound for a user that does not exist.
type Store interface {
	Get(ctx context.Context, username string) (birthday.Date, error)
	Put(ctx context.Context, username string, born birthday.Date) error
	Ping(ctx context.Context) error
}

// Version describes the running binary for /version.
type Version struct {
	Commit    string `json:"commit"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"goVersion"`
}

// Config holds a Server's dependencies.
type Config struct {
	Store Store
	// NotFound is the error Store.Get returns for a missing user.
	NotFound error
	Logger   *slog.Logger
	// Now and Location decide what "today" is.
	Now      func() time.Time
	Location *time.Location
	Version  Version
	// Registerer receives the server's metrics; Gatherer serves /metrics.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// ReadyTimeout bounds the database check of /readyz (default 1s).
	ReadyTimeout time.Duration
	// QueryTimeout bounds each database call of the API (default 5s).
	QueryTimeout time.Duration
}

// Server is an http.Handler for the whole service.
type Server struct {
	cfg      Config
	draining atomic.Bool
	routes   []route
	metrics  *metrics
	metricsH http.Handler
	version  []byte
}

type route struct {
	name    string // label in metrics and logs
	match   func(path string) (param string, ok bool)
	methods map[string]handler
	allow   string
}

// handler serves one route; param is the path parameter, if the route has one.
type handler func(w http.ResponseWriter, r *http.Request, param string)

// New returns a Server. It panics if cfg lacks a Store or registering its
// metrics fails, which are programming errors.
func New(cfg Config) *Server {
	if cfg.Store == nil {
		panic("server.New: Config.Store is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = time.Second
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 5 * time.Second
	}
	if cfg.Version.GoVersion == "" {
		cfg.Version.GoVersion = runtime.Version()
	}
	if cfg.Registerer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	s := &Server{cfg: cfg, metrics: newMetrics(cfg.Registerer)}
	s.metricsH = promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})
	s.version, _ = json.Marshal(cfg.Version)

	exact := func(p string) func(string) (string, bool) {
		return func(path string) (string, bool) { return "", path == p }
	}
	s.routes = []route{
		{name: "/hello/{username}", match: helloPath, methods: map[string]handler{
			http.MethodGet: s.getHello, http.MethodHead: s.getHello, http.MethodPut: s.putHello}},
		{name: "/healthz", match: exact("/healthz"), methods: map[string]handler{http.MethodGet: s.healthz, http.MethodHead: s.healthz}},
		{name: "/readyz", match: exact("/readyz"), methods: map[string]handler{http.MethodGet: s.readyz, http.MethodHead: s.readyz}},
		{name: "/statusz", match: exact("/statusz"), methods: map[string]handler{http.MethodGet: s.readyz, http.MethodHead: s.readyz}},
		{name: "/version", match: exact("/version"), methods: map[string]handler{http.MethodGet: s.versionz, http.MethodHead: s.versionz}},
		{name: "/metrics", match: exact("/metrics"), methods: map[string]handler{http.MethodGet: s.metricsz, http.MethodHead: s.metricsz}},
	}
	for i := range s.routes {
		s.routes[i].allow = allowHeader(s.routes[i].methods)
	}
	return s
}

func allowHeader(methods map[string]handler) string {
	var ms []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		if methods[m] != nil {
			ms = append(ms, m)
		}
	}
	return strings.Join(ms, ", ")
}

// helloPath matches /hello/<username>; the username may be any non-empty
// segment, validated by the handler.
func helloPath(path string) (string, bool) {
	name, ok := strings.CutPrefix(path, "/hello/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// Drain makes /readyz and /statusz answer 503 from now on; call it when
// shutdown begins. The API keeps serving.
func (s *Server) Drain() { s.draining.Store(true) }

// ServeHTTP routes the request, then logs it and counts it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	name := s.serve(rec, r)
	elapsed := time.Since(start)
	s.metrics.observe(name, r.Method, rec.status, elapsed)
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.status),
		slog.Float64("durationMs", float64(elapsed.Microseconds())/1000),
		slog.Int64("bytes", rec.bytes),
		slog.String("remote", r.RemoteAddr),
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("error", rec.err.Error()))
	}
	level := slog.LevelInfo
	if rec.status >= 500 {
		level = slog.LevelError
	}
	s.cfg.Logger.LogAttrs(r.Context(), level, "request", attrs...)
}

func (s *Server) serve(w *recorder, r *http.Request) string {
	for _, rt := range s.routes {
		param, ok := rt.match(r.URL.Path)
		if !ok {
			continue
		}
		h := rt.methods[r.Method]
		if h == nil {
			w.Header().Set("Allow", rt.allow)
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+rt.name+"; use "+rt.allow)
			return rt.name
		}
		h(w, r, param)
		return rt.name
	}
	writeError(w, http.StatusNotFound, "no such path: "+r.URL.Path)
	return "unmatched"
}

func (s *Server) today() birthday.Date {
	return birthday.Today(s.cfg.Now(), s.cfg.Location)
}

func (s *Server) getHello(w http.ResponseWriter, r *http.Request, name string) {
	if birthday.ValidateUsername(name) != nil {
		// A name that could not have been saved is a user that does not exist.
		writeError(w, http.StatusNotFound, "user "+name+" not found")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	born, err := s.cfg.Store.Get(ctx, name)
	switch {
	case err != nil && errors.Is(err, s.cfg.NotFound):
		writeError(w, http.StatusNotFound, "user "+name+" not found")
	case err != nil:
		s.dbError(w, "get", err)
	default:
		writeJSON(w, http.StatusOK, message{Message: birthday.Greeting(name, s.today(), born)})
	}
}

func (s *Server) putHello(w http.ResponseWriter, r *http.Request, name string) {
	if err := birthday.ValidateUsername(name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.ContentLength > MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "body must be at most 1024 bytes")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "body could not be read: "+err.Error())
		return
	}
	if len(body) > MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "body must be at most 1024 bytes")
		return
	}
	born, err := birthday.DecodeRequest(body, s.today())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	if err := s.cfg.Store.Put(ctx, name, born); err != nil {
		s.dbError(w, "put", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// dbError counts a failed database call, keeps the error for the request
// log, and answers 500 (503 for the readiness check) without details.
func (s *Server) dbError(w http.ResponseWriter, op string, err error) {
	s.metrics.dbErrors.WithLabelValues(op).Inc()
	if rec, ok := w.(*recorder); ok {
		rec.err = err
	}
	if op == "ping" {
		writeJSON(w, http.StatusServiceUnavailable, status{Status: "unavailable", Error: "the database did not answer"})
		return
	}
	writeError(w, http.StatusInternalServerError, "the database is unavailable; try again later")
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ string) {
	writeJSON(w, http.StatusOK, status{Status: "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ string) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, status{Status: "draining", Error: "the server is shutting down"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		s.dbError(w, "ping", err)
		return
	}
	writeJSON(w, http.StatusOK, status{Status: "ok"})
}

func (s *Server) versionz(w http.ResponseWriter, r *http.Request, _ string) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.version)
}

func (s *Server) metricsz(w http.ResponseWriter, r *http.Request, _ string) {
	s.metricsH.ServeHTTP(w, r)
}

type message struct {
	Message string `json:"message"`
}

type status struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":"response could not be encoded"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(body)
}

// recorder remembers the status and size of a response for the request log.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	err         error
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
