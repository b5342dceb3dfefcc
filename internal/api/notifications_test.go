package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
)

func TestNotificationsRoutes(t *testing.T) {
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rows := []ledger.Notification{
		{DeliveryID: "d1", App: "web", Event: "released", Destination: "chat", URL: "https://h/x", Format: "slack", Body: []byte(`{}`)},
		{DeliveryID: "d2", App: "api", Event: "deployed", Destination: "audit", URL: "https://h/y", Format: "json", Body: []byte(`{}`)},
	}
	if err := store.AddNotifications(ctx, rows); err != nil {
		t.Fatal(err)
	}
	web, api := newFakeApp("web"), newFakeApp("api")
	s := NewServer(&fakeApps{apps: []*fakeApp{web, api}}, "secret", nil)
	s.EnableNotifications(store)
	l := httptest.NewServer(s)
	defer l.Close()
	c := NewClient(l.URL, "")

	ids := func(app, state string) []string {
		t.Helper()
		list, err := c.Notifications(ctx, app, state, 0)
		if err != nil {
			t.Fatalf("Notifications(%q, %q): %v", app, state, err)
		}
		var out []string
		for _, n := range list {
			out = append(out, n.DeliveryID+" "+n.State)
		}
		return out
	}
	if diff := cmp.Diff([]string{"d2 pending", "d1 pending"}, ids("", "")); diff != "" {
		t.Errorf("every app's (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"d1 pending"}, ids("web", "pending")); diff != "" {
		t.Errorf("web's (-want +got):\n%s", diff)
	}
	if got := ids("web", "delivered"); len(got) != 0 {
		t.Errorf("web's delivered = %v, want none", got)
	}
	for _, tc := range []struct {
		target string
		remote bool
		status int
	}{
		{"/api/v1/apps/blog/notifications", false, http.StatusNotFound},
		{"/api/v1/notifications?state=lost", false, http.StatusBadRequest},
		{"/api/v1/notifications?limit=0", false, http.StatusBadRequest},
		{"/api/v1/notifications", true, http.StatusUnauthorized},
	} {
		req := httptest.NewRequest("GET", tc.target, nil)
		req.RemoteAddr = "127.0.0.1:5555"
		if tc.remote {
			req.RemoteAddr = "192.0.2.7:5555"
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Errorf("GET %s (remote %v) = %d %s, want %d", tc.target, tc.remote, w.Code, w.Body, tc.status)
		}
	}
}
