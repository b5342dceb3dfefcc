// Package web is the dashboard that `slipway serve` shows at the root of
// the API's address: what runs where (live), each app's pipeline, its
// deployments, history, diffs and DORA metrics, and forms to release,
// roll back and scale. Pages are rendered on the server with html/template
// from files embedded in the binary; a little plain JavaScript keeps the
// overview live (Server-Sent Events) and follows build logs. Reads are open
// to loopback clients like the API's; every change needs the API token,
// asked for once and kept in an HttpOnly cookie (docs/dashboard.md).
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/pipeline"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Subscription tells the dashboard that apps changed: C receives (coalesced)
// after one or more changes, Take returns which apps changed since the last
// Take, Cancel ends it. A *changes.Sub is one.
type Subscription interface {
	C() <-chan struct{}
	Take() []string
	Cancel()
}

// BuildLogger is what an api.App offers when it keeps build logs: the log
// of the app's latest build of commit ("latest": the newest build), copied
// to w, following while the build runs when follow is set.
type BuildLogger interface {
	BuildLog(ctx context.Context, commit string, follow bool, w io.Writer) error
}

// CommitLister is what an api.App offers when it can list the newest
// commits of its source branch, newest first: the dashboard then names the
// commit every environment runs (not only those still pending) and shows
// them as the pipeline page's rows.
type CommitLister interface {
	RecentCommits(ctx context.Context, limit int) ([]pipeline.Commit, error)
}

// Options configure the dashboard.
type Options struct {
	Apps api.Apps
	// Subscribe subscribes to the controller's changes (a deployment row or
	// step, a build row); nil: the overview is read again every
	// ReplicaRefresh instead.
	Subscribe func() Subscription
	// Token is the API token: it guards every change.
	Token string
	// Steps returns the steps of one of app's deployments, as a value whose
	// JSON is a list of {"name","state","started","finished","message"}
	// (ledger.Step); nil: the app's own (api.App.Steps).
	Steps func(ctx context.Context, app api.App, deploymentID int64) (any, error)
	// DORA returns the DORA report of app ("" for every app together) over
	// the last since, as a value whose JSON is the report of
	// GET /api/v1/dora (docs/api.md); nil: the DORA page says it is not
	// available.
	DORA   func(ctx context.Context, app string, since time.Duration) (any, error)
	Logger *slog.Logger
	// AllowPlainWrites lets browsers on other machines sign in and make
	// changes over plain HTTP, which sends the token in clear; by default
	// only loopback clients and TLS connections may, as with the API.
	AllowPlainWrites bool
	// ReplicaRefresh is how often the overview is read again while
	// browsers watch it, for what changes without a ledger write (replicas
	// becoming ready); default 3 s.
	ReplicaRefresh time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Handler serves the dashboard.
type Handler struct {
	o     Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	frag  *template.Template // the overview fragment, for live updates
	live  *live
	// commits remembers the subjects and authors of commits seen in the
	// apps' pending lists and diffs, to name what each environment runs.
	commits *commitCache
	// ctx ends with Close: open streams and followed logs end with it.
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns the dashboard over o.Apps.
func New(o Options) (*Handler, error) {
	if o.Apps == nil {
		return nil, errors.New("web: no apps")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReplicaRefresh <= 0 {
		o.ReplicaRefresh = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, log: o.Logger, mux: http.NewServeMux(), pages: map[string]*template.Template{}, commits: newCommitCache(4096)}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if err := h.parse(); err != nil {
		return nil, err
	}
	h.live = newLive(h)
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, files)))
	h.mux.HandleFunc("GET /{$}", h.read(h.overview))
	h.mux.HandleFunc("GET /events", h.read(h.events))
	h.mux.HandleFunc("GET /login", h.loginPage)
	h.mux.HandleFunc("POST /login", h.login)
	h.mux.HandleFunc("POST /logout", h.logout)
	h.mux.HandleFunc("GET /history", h.read(h.history))
	h.mux.HandleFunc("GET /dora", h.read(h.dora))
	h.mux.HandleFunc("GET /apps/{app}", h.read(h.appPage))
	h.mux.HandleFunc("GET /apps/{app}/diff", h.read(h.diff))
	h.mux.HandleFunc("GET /apps/{app}/deployments/{id}", h.read(h.deployment))
	h.mux.HandleFunc("GET /apps/{app}/builds/{commit}/log", h.read(h.buildLog))
	for _, action := range []string{"release", "rollback", "scale"} {
		h.mux.HandleFunc("GET /apps/{app}/"+action, h.read(h.confirm(action)))
		h.mux.HandleFunc("POST /apps/{app}/"+action, h.write(h.act(action)))
	}
	h.mux.HandleFunc("/", h.notFound)
}

// ServeHTTP serves the dashboard.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// Close ends every open event stream and followed log, and the live
// updates' refresher: call it before shutting the server down, which
// would otherwise wait for them.
func (h *Handler) Close() {
	h.cancel()
	h.live.close()
}

// requestContext is r's context, ended by Close too.
func (h *Handler) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(h.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func cacheFor(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		next.ServeHTTP(w, r)
	})
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "no such route: " + r.Method + " " + r.URL.Path + " (docs/api.md lists the routes)", "code": api.CodeNotFound})
		return
	}
	h.fail(w, r, http.StatusNotFound, "No such page", "There is no page at "+r.URL.Path+".")
}

// page is what every page's layout shows.
type page struct {
	Title string
	// Nav marks the current section: overview, history, dora, or an app.
	Nav      string
	Apps     []string
	SignedIn bool
	CSRF     string
	// Path is the page's own path, for the sign-in link.
	Path string
	Data any
}

func (h *Handler) newPage(r *http.Request, title, nav string, data any) page {
	p := page{Title: title, Nav: nav, Data: data, Path: r.URL.RequestURI()}
	for _, a := range h.o.Apps.List() {
		p.Apps = append(p.Apps, a.Name())
	}
	if nonce, ok := h.session(r); ok {
		p.SignedIn, p.CSRF = true, h.csrfToken(nonce)
	}
	return p
}

// render writes page name with status, buffered so that a template error
// becomes a clean 500.
func (h *Handler) render(w http.ResponseWriter, status int, name string, p page) {
	t, ok := h.pages[name]
	if !ok {
		panic("web: no template " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		h.log.Error("render page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// failure is the data of the error page.
type failure struct {
	Heading string
	Message string
	// Back is the page to go back to; "" is the overview.
	Back, BackText string
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, heading, msg string) {
	h.failBack(w, r, status, heading, msg, "", "")
}

func (h *Handler) failBack(w http.ResponseWriter, r *http.Request, status int, heading, msg, back, backText string) {
	h.render(w, status, "error", h.newPage(r, heading, "", failure{Heading: heading, Message: msg, Back: back, BackText: backText}))
}

// failErr shows err with the status the API would give it.
func (h *Handler) failErr(w http.ResponseWriter, r *http.Request, heading string, err error) {
	status := statusOf(err)
	if status >= 500 {
		h.log.Error("dashboard request failed", "path", r.URL.Path, "err", err)
	}
	h.fail(w, r, status, heading, err.Error())
}

// statusOf maps errors as the API does.
func statusOf(err error) int {
	var re *pipeline.RefusedError
	switch {
	case errors.As(err, &re), errors.Is(err, pipeline.ErrBusy), errors.Is(err, pipeline.ErrAlreadyLive),
		errors.Is(err, pipeline.ErrNothingReleased), errors.Is(err, pipeline.ErrNotVerified),
		errors.Is(err, pipeline.ErrNotDeployed), errors.Is(err, pipeline.ErrStopped), errors.Is(err, pipeline.ErrNotStopped):
		return http.StatusConflict
	case errors.Is(err, pipeline.ErrUnknownEnv), errors.Is(err, pipeline.ErrNotReleased), errors.Is(err, api.ErrUnknownApp):
		return http.StatusNotFound
	case errors.Is(err, pipeline.ErrInvalid), errors.Is(err, pipeline.ErrReasonRequired), errors.Is(err, pipeline.ErrNoControlledEnv):
		return http.StatusBadRequest
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return http.StatusInternalServerError
}

// app returns the app named in the path, or answers 404.
func (h *Handler) app(w http.ResponseWriter, r *http.Request) (api.App, bool) {
	name := r.PathValue("app")
	if a, ok := h.o.Apps.Get(name); ok {
		return a, true
	}
	h.fail(w, r, http.StatusNotFound, "No such app", fmt.Sprintf("This controller runs no app %q.", name))
	return nil, false
}

// commitCache remembers commits' subjects and authors, at most max of them.
type commitCache struct {
	mu    sync.Mutex
	max   int
	m     map[string]pipeline.Commit
	order []string
	tried map[string]bool
}

func newCommitCache(max int) *commitCache {
	return &commitCache{max: max, m: map[string]pipeline.Commit{}, tried: map[string]bool{}}
}

func (c *commitCache) add(list []pipeline.Commit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cm := range list {
		if _, ok := c.m[cm.Hash]; ok || cm.Hash == "" {
			continue
		}
		if len(c.order) >= c.max {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
		c.m[cm.Hash] = cm
		c.order = append(c.order, cm.Hash)
	}
}

// tryOnce reports whether hash is asked for the first time, so that a
// commit no list names is not looked for again and again.
func (c *commitCache) tryOnce(hash string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tried[hash] {
		return false
	}
	if len(c.tried) >= c.max {
		clear(c.tried)
	}
	c.tried[hash] = true
	return true
}

func (c *commitCache) get(hash string) (pipeline.Commit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cm, ok := c.m[hash]
	return cm, ok
}
