// Package api is the controller's JSON API, served by `slipway serve` and
// used by the CLI: reads are open to loopback clients; changes (and reads
// from elsewhere) need the token that the controller writes into its data
// directory on first start. docs/api.md describes every route.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// DefaultAddr is where the API listens unless told otherwise.
const DefaultAddr = "127.0.0.1:8400"

// TokenFile is the token's file inside the data directory.
const TokenFile = "api-token"

// Controller is what the API serves.
type Controller interface {
	Status(ctx context.Context) (pipeline.Status, error)
	History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error)
	Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error)
	Deployment(ctx context.Context, id int64) (ledger.Deployment, error)
	Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error)
	Rollback(ctx context.Context, target, trigger string) (ledger.Deployment, error)
	Scale(ctx context.Context, env string, replicas int) (ledger.Deployment, error)
}

// BuildLister lists the builds the ledger recorded.
type BuildLister interface {
	ListBuilds(ctx context.Context, f ledger.BuildFilter) ([]ledger.Build, error)
}

// Server is the API's HTTP server.
type Server struct {
	ctl    Controller
	builds BuildLister      // nil: history has no builds
	logs   deploy.LogSource // nil: no logs
	token  string
	log    *slog.Logger
	mux    *http.ServeMux
	srv    *http.Server
}

// NewServer returns the API over ctl. logs may be nil. token guards changes.
func NewServer(ctl Controller, logs deploy.LogSource, token string, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{ctl: ctl, logs: logs, token: token, log: logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /api/v1/status", s.read(s.status))
	s.mux.HandleFunc("GET /api/v1/history", s.read(s.history))
	s.mux.HandleFunc("GET /api/v1/diff", s.read(s.diff))
	s.mux.HandleFunc("GET /api/v1/deployments/{id}", s.read(s.deployment))
	s.mux.HandleFunc("GET /api/v1/logs/{env}", s.read(s.envLogs))
	s.mux.HandleFunc("POST /api/v1/releases", s.write(s.release))
	s.mux.HandleFunc("POST /api/v1/rollbacks", s.write(s.rollback))
	s.mux.HandleFunc("POST /api/v1/scale", s.write(s.scale))
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// IncludeBuilds adds the ledger's builds to the history of all environments.
func (s *Server) IncludeBuilds(b BuildLister) { s.builds = b }

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve serves on l until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("API on %s: %w", l.Addr(), err)
	}
	return nil
}

// Shutdown stops serving, waiting up to ctx for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
		return err
	}
	return nil
}

// LoadOrCreateToken returns the token in dataDir, creating it (random, mode
// 0600) when there is none.
func LoadOrCreateToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, TokenFile)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read API token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("make API token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("write API token: %w", err)
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write API token: %w", err)
	}
	return tok, nil
}

type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	got, ok := strings.CutPrefix(h, "Bearer ")
	return ok && s.token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}

func loopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// read serves loopback clients freely, others with the token.
func (s *Server) read(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !loopback(r) && !s.authorized(r) {
			writeError(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "reads from outside this machine need the API token (Authorization: Bearer …)"})
			return
		}
		s.serve(w, r, h)
	}
}

// write needs the token.
func (s *Server) write(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			writeError(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "changes need the API token: set SLIPWAY_TOKEN, or run the CLI where it can read the controller's data directory (" + TokenFile + ")"})
			return
		}
		s.serve(w, r, h)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, h handler) {
	if err := h(w, r); err != nil {
		e := classify(err)
		if e.Status >= 500 {
			s.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeError(w, e)
	}
}

// Error codes in error answers; the CLI maps them to exit codes.
const (
	CodeRefused      = "refused"      // the preflight refused a release
	CodeConflict     = "conflict"     // busy, already live, nothing released
	CodeNotFound     = "not_found"    // unknown environment, commit, release, deployment
	CodeInvalid      = "invalid"      // a request that can never succeed as written
	CodeUnauthorized = "unauthorized" // no or wrong token
	CodeInternal     = "internal"     // anything else
)

// Error is an API error answer: {"error": "...", "code": "..."}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

func classify(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	e := &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
	var re *pipeline.RefusedError
	switch {
	case errors.As(err, &re):
		e.Status, e.Code = http.StatusConflict, CodeRefused
	case errors.Is(err, pipeline.ErrBusy), errors.Is(err, pipeline.ErrAlreadyLive), errors.Is(err, pipeline.ErrNothingReleased),
		errors.Is(err, pipeline.ErrNotVerified), errors.Is(err, pipeline.ErrNotDeployed):
		e.Status, e.Code = http.StatusConflict, CodeConflict
	case errors.Is(err, pipeline.ErrUnknownEnv), errors.Is(err, pipeline.ErrNotReleased), errors.Is(err, ledger.ErrNotFound),
		errors.Is(err, gitsource.ErrUnknownRevision):
		e.Status, e.Code = http.StatusNotFound, CodeNotFound
	case errors.Is(err, pipeline.ErrInvalid), errors.Is(err, pipeline.ErrReasonRequired), errors.Is(err, pipeline.ErrNoControlledEnv):
		e.Status, e.Code = http.StatusBadRequest, CodeInvalid
	}
	return e
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) { writeJSON(w, e.Status, e) }

func invalid(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("request body: %v", err)
	}
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ctl.Status(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// History is the answer of GET /api/v1/history: the deployments, newest
// first, and, when no environment is asked for, the builds too.
type History struct {
	Deployments []ledger.Deployment `json:"deployments"`
	Builds      []ledger.Build      `json:"builds,omitempty"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) error {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return invalid("limit %q: give a number from 1 to 10000", v)
		}
		limit = n
	}
	env := r.URL.Query().Get("env")
	list, err := s.ctl.History(r.Context(), env, limit)
	if err != nil {
		return err
	}
	if list == nil {
		list = []ledger.Deployment{}
	}
	h := History{Deployments: list}
	if env == "" && s.builds != nil {
		if h.Builds, err = s.builds.ListBuilds(r.Context(), ledger.BuildFilter{Limit: limit}); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

// Diff is the answer of GET /api/v1/diff.
type Diff struct {
	From    string            `json:"from"`
	To      string            `json:"to"`
	Commits []pipeline.Commit `json:"commits"`
}

func (s *Server) diff(w http.ResponseWriter, r *http.Request) error {
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if from == "" || to == "" {
		return invalid("diff needs from and to environments")
	}
	list, err := s.ctl.Diff(r.Context(), from, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, Diff{From: from, To: to, Commits: list})
	return nil
}

func (s *Server) deployment(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return invalid("deployment id %q is not a number", r.PathValue("id"))
	}
	d, err := s.ctl.Deployment(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// ReleaseRequest is the body of POST /api/v1/releases.
type ReleaseRequest struct {
	Commit string `json:"commit"`
	Force  bool   `json:"force"`
	Reason string `json:"reason"`
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) error {
	var req ReleaseRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	d, err := s.ctl.Release(r.Context(), pipeline.ReleaseRequest{Commit: req.Commit, Force: req.Force, Reason: req.Reason, Trigger: "release command"})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

// RollbackRequest is the body of POST /api/v1/rollbacks.
type RollbackRequest struct {
	Target string `json:"target"`
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) error {
	var req RollbackRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	d, err := s.ctl.Rollback(r.Context(), req.Target, "rollback command")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

// ScaleRequest is the body of POST /api/v1/scale.
type ScaleRequest struct {
	Env      string `json:"env"`
	Replicas int    `json:"replicas"`
}

func (s *Server) scale(w http.ResponseWriter, r *http.Request) error {
	var req ScaleRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	d, err := s.ctl.Scale(r.Context(), req.Env, req.Replicas)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

func (s *Server) envLogs(w http.ResponseWriter, r *http.Request) error {
	if s.logs == nil {
		return &Error{Status: http.StatusNotImplemented, Code: CodeInvalid, Message: "this runtime does not keep logs"}
	}
	follow := r.URL.Query().Get("follow") == "1" || r.URL.Query().Get("follow") == "true"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fw := &flushWriter{w: w}
	err := s.logs.Logs(r.Context(), r.PathValue("env"), follow, fw)
	if err != nil && !fw.wrote {
		if errors.Is(err, deploy.ErrNotDeployed) {
			return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
		}
		return err
	}
	return nil
}

type flushWriter struct {
	w     http.ResponseWriter
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.wrote = true
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
