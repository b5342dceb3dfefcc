package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"slipway.dev/slipway/internal/ledger"
)

// NotificationLister reads the notifications outbox.
type NotificationLister interface {
	Notifications(ctx context.Context, f ledger.NotificationFilter) ([]ledger.Notification, error)
}

var _ NotificationLister = (*ledger.Store)(nil)

// Notifications is the answer of GET /api/v1/notifications: the newest
// deliveries first.
type Notifications struct {
	Notifications []ledger.Notification `json:"notifications"`
}

// EnableNotifications serves the outbox's deliveries: every app's at
// GET /api/v1/notifications, one app's at
// GET /api/v1/apps/{app}/notifications; reads, with the token rules of
// every read.
func (s *Server) EnableNotifications(l NotificationLister) {
	s.mux.HandleFunc("GET /api/v1/notifications", s.read(func(w http.ResponseWriter, r *http.Request) error {
		return s.notifications(w, r, l, "")
	}))
	s.mux.HandleFunc("GET /api/v1/apps/{app}/notifications", s.read(s.scoped(func(w http.ResponseWriter, r *http.Request, a App) error {
		return s.notifications(w, r, l, a.Name())
	})))
}

func (s *Server) notifications(w http.ResponseWriter, r *http.Request, l NotificationLister, app string) error {
	limit, err := limitParam(r, 50)
	if err != nil {
		return err
	}
	state := r.URL.Query().Get("state")
	switch state {
	case "", ledger.NotificationPending, ledger.NotificationDelivered, ledger.NotificationFailed:
	default:
		return invalid("state %q: give pending, delivered or failed, or leave it out", state)
	}
	list, err := l.Notifications(r.Context(), ledger.NotificationFilter{App: app, State: state, Limit: limit})
	if err != nil {
		return err
	}
	if list == nil {
		list = []ledger.Notification{}
	}
	writeJSON(w, http.StatusOK, Notifications{Notifications: list})
	return nil
}

// Notifications returns the newest deliveries of app's notifications
// (every app's when app is ""), in state ("" for any).
func (c *Client) Notifications(ctx context.Context, app, state string, limit int) ([]ledger.Notification, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if state != "" {
		q.Set("state", state)
	}
	var n Notifications
	err := c.do(ctx, http.MethodGet, appPath(app, "/notifications?"+q.Encode()), nil, &n)
	return n.Notifications, err
}
