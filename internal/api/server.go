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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/dora"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// DefaultAddr is where the API listens unless told otherwise.
const DefaultAddr = "127.0.0.1:8400"

// TokenFile is the token's file inside the data directory.
const TokenFile = "api-token"

// App is one application the controller runs: its pipeline, builds and
// environments.
type App interface {
	Name() string
	RepoURL() string
	// Environments are the app's environment names, in chain order.
	Environments() []string
	Status(ctx context.Context) (pipeline.Status, error)
	History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error)
	Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error)
	Deployment(ctx context.Context, id int64) (ledger.Deployment, error)
	// Steps are the steps of one of the app's deployments, in the order
	// they started (an empty list when it has none); ledger.ErrNotFound
	// for a deployment of no or another app.
	Steps(ctx context.Context, deploymentID int64) ([]ledger.Step, error)
	Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error)
	Rollback(ctx context.Context, req pipeline.RollbackRequest) (ledger.Deployment, error)
	Scale(ctx context.Context, env string, replicas int) (ledger.Deployment, error)
	Stop(ctx context.Context, env string) (ledger.Deployment, error)
	Start(ctx context.Context, env string) (ledger.Deployment, error)
	// Logs copies env's logs to w; with follow, until ctx ends. It returns
	// deploy.ErrNotDeployed when nothing runs there, pipeline.ErrUnknownEnv
	// for a name that is not configured, and errors.ErrUnsupported when the
	// runtime keeps no logs.
	Logs(ctx context.Context, env string, follow bool, w io.Writer) error
	Builds(ctx context.Context, f ledger.BuildFilter) ([]ledger.Build, error)
	// BuildLog copies the log of the app's newest build of commit (a hash
	// or a prefix of 7 or more hex digits; "latest": the app's newest
	// build) to w; with follow, until the build ends or ctx does. An
	// unknown commit is ledger.ErrNotFound.
	BuildLog(ctx context.Context, commit string, follow bool, w io.Writer) error
	// Poll makes the app look at its repository now (push webhooks).
	Poll()
	// Pushed says a push webhook named commit as branch's new head: the
	// app starts on it without waiting for a fetch, and looks at its
	// repository now.
	Pushed(branch, commit string)
	// DORA computes the app's delivery metrics over the last since
	// (docs/dora.md).
	DORA(ctx context.Context, since time.Duration) (dora.Report, error)
}

// Apps are the applications the controller runs.
type Apps interface {
	// List returns the apps in the configuration's order.
	List() []App
	Get(name string) (App, bool)
	// Leftovers are the apps and environments the ledger knows that left
	// the configuration.
	Leftovers(ctx context.Context) ([]Leftover, error)
	// Remove deletes what a leftover app or environment left behind. It
	// returns ErrUnknownApp for an app it knows nothing of and
	// ErrStillConfigured for one still in the configuration.
	Remove(ctx context.Context, req RemoveRequest) (RemoveReport, error)
}

// Leftover is an app, or one environment of an app, that the ledger knows
// and the configuration no longer names.
type Leftover struct {
	App string `json:"app"`
	Env string `json:"env,omitempty"` // "": the whole app
}

// RemoveRequest is the body of POST /api/v1/remove: what to remove of a
// leftover app (Env "": all of it) and whether its database and registry
// tags go too.
type RemoveRequest struct {
	App            string `json:"app"`
	Env            string `json:"env,omitempty"`
	DeleteDatabase bool   `json:"deleteDatabase"`
	DeleteTags     bool   `json:"deleteTags"`
}

// RemoveReport is the answer of POST /api/v1/remove: one line per thing
// removed and per thing kept, for people to read.
type RemoveReport struct {
	Removed []string `json:"removed"`
	Kept    []string `json:"kept"`
}

// Errors an Apps implementation returns for callers to act on.
var (
	// ErrUnknownApp: no app of that name (404).
	ErrUnknownApp = errors.New("no such app")
	// ErrStillConfigured: what a remove names is still in the
	// configuration (409).
	ErrStillConfigured = errors.New("still in the configuration")
)

// Server is the API's HTTP server.
type Server struct {
	// hookReads holds a slot per webhook body being read.
	hookReads chan struct{}
	// plainWrites lets clients on other machines make changes over plain
	// HTTP (AllowPlainWrites).
	plainWrites bool
	apps        Apps
	token       string
	log         *slog.Logger
	mux         *http.ServeMux
	srv         *http.Server
}

// NewServer returns the API over apps. token guards changes.
func NewServer(apps Apps, token string, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{apps: apps, token: token, log: logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /api/v1/apps", s.read(s.listApps))
	s.mux.HandleFunc("GET /api/v1/status", s.read(s.statusAll))
	s.mux.HandleFunc("GET /api/v1/apps/{app}/status", s.read(s.scoped(s.status)))
	s.mux.HandleFunc("GET /api/v1/leftovers", s.read(s.leftovers))
	s.mux.HandleFunc("POST /api/v1/remove", s.write(s.remove))
	s.route("GET /history", false, s.history)
	s.route("GET /diff", false, s.diff)
	s.route("GET /deployments/{id}", false, s.deployment)
	s.route("GET /logs/{env}", false, s.envLogs)
	s.route("GET /builds", false, s.listBuilds)
	s.route("GET /builds/{commit}/log", false, s.buildLog)
	s.route("POST /builds", true, s.importBuild)
	s.route("POST /releases", true, s.release)
	s.route("POST /rollbacks", true, s.rollback)
	s.route("POST /scale", true, s.scale)
	s.route("POST /environments/{env}/stop", true, s.stop)
	s.route("POST /environments/{env}/start", true, s.start)
	s.routeDORA()
	s.routeHolds()
	s.routeGC()
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// appHandler serves a request about one app.
type appHandler func(w http.ResponseWriter, r *http.Request, a App) error

// route serves h at /api/v1/apps/{app}PATH and at /api/v1PATH, which works
// while the controller runs one app; write says it changes something.
func (s *Server) route(pattern string, write bool, h appHandler) {
	method, path, _ := strings.Cut(pattern, " ")
	guard := s.read
	if write {
		guard = s.write
	}
	s.mux.HandleFunc(method+" /api/v1/apps/{app}"+path, guard(s.scoped(h)))
	s.mux.HandleFunc(method+" /api/v1"+path, guard(s.unscoped(h)))
}

// scoped serves h for the app named in the path.
func (s *Server) scoped(h appHandler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.app(r.PathValue("app"))
		if err != nil {
			return err
		}
		return h(w, r, a)
	}
}

// unscoped serves h for the only app; with several, the request must name
// one.
func (s *Server) unscoped(h appHandler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		list := s.apps.List()
		switch len(list) {
		case 0:
			return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this controller runs no app"}
		case 1:
			return h(w, r, list[0])
		}
		scoped := "/api/v1/apps/" + list[0].Name() + strings.TrimPrefix(r.URL.Path, "/api/v1")
		return invalid("this controller runs several apps (%s): name one in the path, such as %s, or with slipway --app APP",
			strings.Join(appNames(list), ", "), scoped)
	}
}

func (s *Server) app(name string) (App, error) {
	if a, ok := s.apps.Get(name); ok {
		return a, nil
	}
	return nil, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("no app %q on this controller: its apps are %s", name, strings.Join(appNames(s.apps.List()), ", "))}
}

func appNames(list []App) []string {
	names := make([]string, len(list))
	for i, a := range list {
		names[i] = a.Name()
	}
	return names
}

// Handle registers h for pattern on the API's mux, beside the API's own
// routes (the dashboard mounts itself at "/"). The more specific pattern
// wins, so the API's routes keep answering.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

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

// Loopback reports whether r came from this machine's loopback interface.
func Loopback(r *http.Request) bool {
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
		if !Loopback(r) && !s.authorized(r) {
			writeError(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "reads from outside this machine need the API token (Authorization: Bearer …)"})
			return
		}
		s.serve(w, r, h)
	}
}

// AllowPlainWrites lets clients on other machines make changes over plain
// HTTP, which sends the token in clear: by default only loopback clients
// and TLS connections may.
func (s *Server) AllowPlainWrites() { s.plainWrites = true }

// WriteRefused returns why r may not change anything whatever its
// credentials (a plain-HTTP request from another machine), or nil.
func (s *Server) WriteRefused(r *http.Request) *Error {
	if s.plainWrites || r.TLS != nil || Loopback(r) {
		return nil
	}
	return &Error{Status: http.StatusForbidden, Code: CodeUnauthorized,
		Message: "changes from another machine over plain HTTP are refused, as they would send the API token in clear: " +
			"reach the API through a TLS proxy on the controller's machine, or start slipway serve with --api-allow-plain-writes"}
}

// write needs the token.
func (s *Server) write(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if e := s.WriteRefused(r); e != nil {
			writeError(w, e)
			return
		}
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
	CodeRefused      = "refused"      // the preflight refused a release, or the schema check a rollback
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
		errors.Is(err, pipeline.ErrNotVerified), errors.Is(err, pipeline.ErrNotDeployed),
		errors.Is(err, pipeline.ErrStopped), errors.Is(err, pipeline.ErrNotStopped),
		errors.Is(err, pipeline.ErrLocked), errors.Is(err, pipeline.ErrNotLocked), errors.Is(err, pipeline.ErrNotPinned):
		e.Status, e.Code = http.StatusConflict, CodeConflict
	case errors.Is(err, pipeline.ErrUnknownEnv), errors.Is(err, pipeline.ErrNotReleased), errors.Is(err, ledger.ErrNotFound),
		errors.Is(err, gitsource.ErrUnknownRevision):
		e.Status, e.Code = http.StatusNotFound, CodeNotFound
	case errors.Is(err, pipeline.ErrInvalid), errors.Is(err, pipeline.ErrReasonRequired), errors.Is(err, pipeline.ErrNoControlledEnv):
		e.Status, e.Code = http.StatusBadRequest, CodeInvalid
	case errors.Is(err, ErrUnknownApp), errors.Is(err, deploy.ErrNotDeployed):
		e.Status, e.Code = http.StatusNotFound, CodeNotFound
	case errors.Is(err, ErrStillConfigured):
		e.Status, e.Code = http.StatusConflict, CodeConflict
	case errors.Is(err, errors.ErrUnsupported):
		e.Status, e.Code = http.StatusNotImplemented, CodeInvalid
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

// AppInfo is one app in the answer of GET /api/v1/apps.
type AppInfo struct {
	Name string `json:"name"`
	// Repo is the app's repository URL, as configured.
	Repo string `json:"repo"`
	// Environments are the names of its environments, in the
	// configuration's order.
	Environments []string `json:"environments"`
}

// AppList is the answer of GET /api/v1/apps.
type AppList struct {
	Apps []AppInfo `json:"apps"`
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) error {
	list := s.apps.List()
	out := AppList{Apps: make([]AppInfo, len(list))}
	for i, a := range list {
		out.Apps[i] = AppInfo{Name: a.Name(), Repo: a.RepoURL(), Environments: a.Environments()}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// statuses reads the status of every app in list, at the same time.
func statuses(ctx context.Context, list []App) ([]pipeline.Status, error) {
	sts := make([]pipeline.Status, len(list))
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, a := range list {
		wg.Go(func() {
			st, err := a.Status(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("status of %s: %w", a.Name(), err)
				return
			}
			st.App = a.Name()
			sts[i] = st
		})
	}
	wg.Wait()
	return sts, errors.Join(errs...)
}

// AppsStatus is the answer of GET /api/v1/status when the controller runs
// several apps: each app's status, in the configuration's order. With one
// app the answer is that app's pipeline.Status.
type AppsStatus struct {
	Apps []pipeline.Status `json:"apps"`
}

func (s *Server) statusAll(w http.ResponseWriter, r *http.Request) error {
	list := s.apps.List()
	if len(list) == 1 {
		return s.status(w, r, list[0])
	}
	sts, err := statuses(r.Context(), list)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AppsStatus{Apps: sts})
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, a App) error {
	sts, err := statuses(r.Context(), []App{a})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sts[0])
	return nil
}

// Leftovers is the answer of GET /api/v1/leftovers.
type Leftovers struct {
	Leftovers []Leftover `json:"leftovers"`
}

func (s *Server) leftovers(w http.ResponseWriter, r *http.Request) error {
	list, err := s.apps.Leftovers(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []Leftover{}
	}
	writeJSON(w, http.StatusOK, Leftovers{Leftovers: list})
	return nil
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) error {
	var req RemoveRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.App == "" {
		return invalid("remove needs the app: {\"app\": \"NAME\"} (GET /api/v1/leftovers lists what left the configuration)")
	}
	rep, err := s.apps.Remove(r.Context(), req)
	if err != nil {
		return err
	}
	if rep.Removed == nil {
		rep.Removed = []string{}
	}
	if rep.Kept == nil {
		rep.Kept = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// History is the answer of GET /api/v1/history: the deployments, newest
// first, and, when no environment is asked for, the builds too.
type History struct {
	Deployments []ledger.Deployment `json:"deployments"`
	Builds      []ledger.Build      `json:"builds,omitempty"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, a App) error {
	limit, err := limitParam(r, 50)
	if err != nil {
		return err
	}
	env := r.URL.Query().Get("env")
	list, err := a.History(r.Context(), env, limit)
	if err != nil {
		return err
	}
	if list == nil {
		list = []ledger.Deployment{}
	}
	h := History{Deployments: list}
	if env == "" {
		if h.Builds, err = a.Builds(r.Context(), ledger.BuildFilter{Limit: limit}); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

func limitParam(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, invalid("limit %q: give a number from 1 to 10000", v)
	}
	return n, nil
}

// Builds is the answer of GET /api/v1/builds.
type Builds struct {
	Builds []ledger.Build `json:"builds"`
}

func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request, a App) error {
	limit, err := limitParam(r, 50)
	if err != nil {
		return err
	}
	f := ledger.BuildFilter{Limit: limit, State: ledger.BuildState(r.URL.Query().Get("state"))}
	list, err := a.Builds(r.Context(), f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []ledger.Build{}
	}
	writeJSON(w, http.StatusOK, Builds{Builds: list})
	return nil
}

// Diff is the answer of GET /api/v1/diff.
type Diff struct {
	From    string            `json:"from"`
	To      string            `json:"to"`
	Commits []pipeline.Commit `json:"commits"`
}

func (s *Server) diff(w http.ResponseWriter, r *http.Request, a App) error {
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if from == "" || to == "" {
		return invalid("diff needs from and to environments")
	}
	list, err := a.Diff(r.Context(), from, to)
	if err != nil {
		return err
	}
	if list == nil {
		list = []pipeline.Commit{}
	}
	writeJSON(w, http.StatusOK, Diff{From: from, To: to, Commits: list})
	return nil
}

func (s *Server) deployment(w http.ResponseWriter, r *http.Request, a App) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return invalid("deployment id %q is not a number", r.PathValue("id"))
	}
	d, err := a.Deployment(r.Context(), id)
	if err != nil {
		return err
	}
	steps, err := a.Steps(r.Context(), id)
	if err != nil {
		return err
	}
	if steps == nil {
		steps = []ledger.Step{}
	}
	writeJSON(w, http.StatusOK, DeploymentDetail{Deployment: d, Steps: steps})
	return nil
}

// DeploymentDetail is the answer of GET /api/v1/deployments/{id}: the
// deployment's fields, and its steps in the order they started.
type DeploymentDetail struct {
	ledger.Deployment
	Steps []ledger.Step `json:"steps"`
}

// ReleaseRequest is the body of POST /api/v1/releases.
type ReleaseRequest struct {
	// Env is the controlled environment; empty: the final environment.
	Env    string `json:"env,omitempty"`
	Commit string `json:"commit"`
	Force  bool   `json:"force"`
	Reason string `json:"reason"`
	// By names who forces a release, as the caller says (recorded in the
	// trigger of a forced release only).
	By string `json:"by,omitempty"`
}

func (s *Server) release(w http.ResponseWriter, r *http.Request, a App) error {
	var req ReleaseRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	trigger := "release command"
	if req.Force {
		trigger = caller(req.By, trigger)
	}
	d, err := a.Release(r.Context(), pipeline.ReleaseRequest{Env: req.Env, Commit: req.Commit, Force: req.Force, Reason: req.Reason, Trigger: trigger})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

// RollbackRequest is the body of POST /api/v1/rollbacks.
type RollbackRequest struct {
	// Env is the controlled environment; empty: the final environment.
	Env    string `json:"env,omitempty"`
	Target string `json:"target"`
	// Force rolls back to a version the schema check says can no longer
	// run on the environment's database; Reason is then required.
	Force  bool   `json:"force,omitempty"`
	Reason string `json:"reason,omitempty"`
	// By names who forces a rollback (recorded in its trigger).
	By string `json:"by,omitempty"`
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request, a App) error {
	var req RollbackRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	trigger := "rollback command"
	if req.Force {
		trigger = caller(req.By, trigger)
	}
	d, err := a.Rollback(r.Context(), pipeline.RollbackRequest{Env: req.Env, Target: req.Target, Trigger: trigger, Force: req.Force, Reason: req.Reason})
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

func (s *Server) scale(w http.ResponseWriter, r *http.Request, a App) error {
	var req ScaleRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	d, err := a.Scale(r.Context(), req.Env, req.Replicas)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request, a App) error {
	env, err := configuredEnv(r, a)
	if err != nil {
		return err
	}
	d, err := a.Stop(r.Context(), env)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

func (s *Server) start(w http.ResponseWriter, r *http.Request, a App) error {
	env, err := configuredEnv(r, a)
	if err != nil {
		return err
	}
	d, err := a.Start(r.Context(), env)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

// configuredEnv returns the path's {env} if it is one of a's configured
// environments: only such a name goes on to the runtime (which may make a
// file name of it).
func configuredEnv(r *http.Request, a App) (string, error) {
	env := r.PathValue("env")
	names := a.Environments()
	if slices.Contains(names, env) {
		return env, nil
	}
	return "", &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("%s has no environment %q: its environments are %s", a.Name(), env, strings.Join(names, ", "))}
}

func (s *Server) envLogs(w http.ResponseWriter, r *http.Request, a App) error {
	env, err := configuredEnv(r, a)
	if err != nil {
		return err
	}
	follow := r.URL.Query().Get("follow") == "1" || r.URL.Query().Get("follow") == "true"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fw := &flushWriter{w: w}
	err = a.Logs(r.Context(), env, follow, fw)
	if err != nil && !fw.wrote {
		if errors.Is(err, errors.ErrUnsupported) {
			return &Error{Status: http.StatusNotImplemented, Code: CodeInvalid, Message: "this runtime does not keep logs"}
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

// BuildRequest is the body of POST /api/v1/apps/{app}/builds: an image the
// app's CI built and pushed (build.kind: image).
type BuildRequest struct {
	// Image is where CI pushed it: REPOSITORY:TAG or REPOSITORY@sha256:….
	Image string `json:"image"`
	// Commit is the commit it was built from; its
	// org.opencontainers.image.revision label must name the same. Empty:
	// the label's.
	Commit string `json:"commit,omitempty"`
}

// ImportedBuild answers POST …/builds.
type ImportedBuild struct {
	Commit string `json:"commit"`
	Digest string `json:"digest"`
	// Image is the copy the chain deploys: REGISTRY/APP@sha256:….
	Image  string `json:"image"`
	Source string `json:"source"`
	// Already is true when the image had been taken before.
	Already bool `json:"already,omitempty"`
}

// imageImporter is an app whose images may come from CI.
type imageImporter interface {
	ImportImage(ctx context.Context, req BuildRequest) (ImportedBuild, error)
}

func (s *Server) importBuild(w http.ResponseWriter, r *http.Request, a App) error {
	var req BuildRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	im, ok := a.(imageImporter)
	if !ok {
		return &Error{Status: http.StatusNotImplemented, Code: CodeInvalid, Message: "this controller takes no images from CI"}
	}
	b, err := im.ImportImage(r.Context(), req)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if b.Already {
		status = http.StatusOK
	}
	writeJSON(w, status, b)
	return nil
}
