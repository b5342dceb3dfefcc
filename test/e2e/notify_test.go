//go:build integration

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/slipway/internal/notify"
)

// notifyReceiver is a destination of slipway's notifications on
// 127.0.0.1: it checks each delivery's signature and keeps the events.
type notifyReceiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	mu     sync.Mutex
	events []notify.Body
	bodies map[string]string // delivery id → body
}

func startNotifyReceiver(t *testing.T, secret string) *notifyReceiver {
	nr := &notifyReceiver{t: t, secret: secret, bodies: map[string]string{}}
	nr.srv = httptest.NewServer(http.HandlerFunc(nr.serve))
	t.Cleanup(nr.srv.Close)
	return nr
}

// config is the notifications block of slipway.yaml for the receiver,
// signed with the secret in E2E_NOTIFY_SECRET.
func (nr *notifyReceiver) config() string {
	return "notifications:\n  - name: e2e\n    url: " + nr.srv.URL + "/hook?token=x\n    secretEnv: E2E_NOTIFY_SECRET\n"
}

func (nr *notifyReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	id := r.Header.Get(notify.HeaderDelivery)
	if !notify.Verify([]byte(nr.secret), body, r.Header.Get(notify.HeaderSignature)) {
		nr.t.Errorf("notification %s: bad signature", id)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b notify.Body
	if err := json.Unmarshal(body, &b); err != nil || b.ID != id || b.Kind != r.Header.Get(notify.HeaderEvent) {
		nr.t.Errorf("notification %s: body %s (%v) does not match its headers", id, body, err)
	}
	nr.mu.Lock()
	defer nr.mu.Unlock()
	if prev, dup := nr.bodies[id]; dup {
		if prev != string(body) {
			nr.t.Errorf("notification %s sent again with another body:\n%s\n%s", id, prev, body)
		}
		return // a copy, as receivers drop them
	}
	nr.bodies[id] = string(body)
	nr.events = append(nr.events, b)
}

// waitFor waits until every event of want ("kind env commit") has
// arrived, and fails the test naming those missing after a while.
func (nr *notifyReceiver) waitFor(want ...string) {
	nr.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := nr.got()
		var missing []string
		for _, w := range want {
			if !slices.Contains(got, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			nr.t.Logf("notifications received, each signed and once per delivery id: %d", len(got))
			return
		}
		if time.Now().After(deadline) {
			nr.t.Errorf("notifications missing: %s\nreceived:\n%s", strings.Join(missing, "; "), strings.Join(got, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (nr *notifyReceiver) got() []string {
	nr.mu.Lock()
	defer nr.mu.Unlock()
	var out []string
	for _, b := range nr.events {
		out = append(out, b.Kind+" "+b.Env+" "+b.Commit)
	}
	return out
}
