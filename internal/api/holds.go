package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// Holder is an App whose environments can be locked, unlocked and
// unpinned (docs/api.md, "Locks and pins").
type Holder interface {
	Lock(ctx context.Context, req pipeline.LockRequest) (ledger.Lock, error)
	Unlock(ctx context.Context, env, by string) (ledger.Lock, error)
	Unpin(ctx context.Context, env, by string) (ledger.Pin, error)
	// Locks returns the locks that hold and the newest locks, lifted
	// ones too, newest first.
	Locks(ctx context.Context, limit int) (held, history []ledger.Lock, err error)
}

// Locks is the answer of GET /api/v1/apps/{app}/locks.
type Locks struct {
	// Held are the locks that hold now, by environment.
	Held []ledger.Lock `json:"held"`
	// History are the newest locks, lifted ones with unlockedBy and until.
	History []ledger.Lock `json:"history"`
}

// LockRequest is the body of POST /api/v1/apps/{app}/locks.
type LockRequest struct {
	Env    string `json:"env"`
	Reason string `json:"reason"`
	// By names who locks, as the caller says (the CLI sends USER@HOST);
	// the controller records it with how the lock came ("lock command").
	By string `json:"by,omitempty"`
}

func (s *Server) routeHolds() {
	s.route("GET /locks", false, s.listLocks)
	s.route("POST /locks", true, s.lock)
	s.route("DELETE /locks/{env}", true, s.unlock)
	s.route("DELETE /pins/{env}", true, s.unpin)
}

// holder returns a as a Holder, or an error saying its controller cannot.
func holder(a App) (Holder, error) {
	if h, ok := a.(Holder); ok {
		return h, nil
	}
	return nil, &Error{Status: http.StatusNotImplemented, Code: CodeInvalid, Message: "this controller does not lock or pin environments"}
}

// caller is who asks, as recorded: what the caller says it is (by), and
// through what (via).
func caller(by, via string) string {
	by = strings.TrimSpace(by)
	if by == "" {
		return via
	}
	if len(by) > 200 {
		by = by[:200]
	}
	return by + " (" + via + ")"
}

func (s *Server) listLocks(w http.ResponseWriter, r *http.Request, a App) error {
	h, err := holder(a)
	if err != nil {
		return err
	}
	limit, err := limitParam(r, 50)
	if err != nil {
		return err
	}
	held, history, err := h.Locks(r.Context(), limit)
	if err != nil {
		return err
	}
	out := Locks{Held: held, History: history}
	if out.Held == nil {
		out.Held = []ledger.Lock{}
	}
	if out.History == nil {
		out.History = []ledger.Lock{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) lock(w http.ResponseWriter, r *http.Request, a App) error {
	h, err := holder(a)
	if err != nil {
		return err
	}
	var req LockRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Env == "" {
		return invalid("lock needs the environment: {\"env\": \"prod\", \"reason\": \"…\"}")
	}
	lk, err := h.Lock(r.Context(), pipeline.LockRequest{Env: req.Env, Reason: req.Reason, By: caller(req.By, "lock command")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, lk)
	return nil
}

func (s *Server) unlock(w http.ResponseWriter, r *http.Request, a App) error {
	h, err := holder(a)
	if err != nil {
		return err
	}
	env, err := configuredEnv(r, a)
	if err != nil {
		return err
	}
	lk, err := h.Unlock(r.Context(), env, caller(r.URL.Query().Get("by"), "unlock command"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, lk)
	return nil
}

func (s *Server) unpin(w http.ResponseWriter, r *http.Request, a App) error {
	h, err := holder(a)
	if err != nil {
		return err
	}
	env, err := configuredEnv(r, a)
	if err != nil {
		return err
	}
	p, err := h.Unpin(r.Context(), env, caller(r.URL.Query().Get("by"), "unpin command"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// Lock locks app's environment.
func (c *Client) Lock(ctx context.Context, app string, req LockRequest) (ledger.Lock, error) {
	var lk ledger.Lock
	err := c.do(ctx, http.MethodPost, appPath(app, "/locks"), req, &lk)
	return lk, err
}

// Unlock lifts the lock of app's environment env; by names who asks.
func (c *Client) Unlock(ctx context.Context, app, env, by string) (ledger.Lock, error) {
	var lk ledger.Lock
	err := c.do(ctx, http.MethodDelete, appPath(app, "/locks/"+url.PathEscape(env))+byQuery(by), nil, &lk)
	return lk, err
}

// Unpin lets app's automatic environment env take new commits again.
func (c *Client) Unpin(ctx context.Context, app, env, by string) (ledger.Pin, error) {
	var p ledger.Pin
	err := c.do(ctx, http.MethodDelete, appPath(app, "/pins/"+url.PathEscape(env))+byQuery(by), nil, &p)
	return p, err
}

func byQuery(by string) string {
	if by == "" {
		return ""
	}
	return "?by=" + url.QueryEscape(by)
}

// Locks returns app's locks that hold and its newest locks, at most limit.
func (c *Client) Locks(ctx context.Context, app string, limit int) (Locks, error) {
	var out Locks
	err := c.do(ctx, http.MethodGet, appPath(app, "/locks?limit="+strconv.Itoa(limit)), nil, &out)
	return out, err
}
