package notify

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// TestOutageWithRestarts is "the receiver is down for 10 minutes and
// slipway is restarted twice meanwhile, every event arrives", on a fake
// clock: 50 events before the outage's third minute, 50 more between
// the restarts; at each restart a few attempts are in flight and never
// recorded (as after SIGKILL). Every event must arrive, with the delivery
// id it was written with.
func TestOutageWithRestarts(t *testing.T) {
	clock := newFakeClock()
	start := clock.Now()
	upAt := start.Add(10 * time.Minute)
	rc := newReceiver(t, func(*http.Request, int) int {
		if clock.Now().Before(upAt) {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	path := filepath.Join(t.TempDir(), "ledger.db")
	ctx := context.Background()
	opt := Options{Now: clock.Now, Secret: secret, Concurrency: 8}
	var store *ledger.Store
	open := func() {
		store = openStore(t, path)
		store.SetClock(clock.Now)
	}
	open()
	write := func(k int) {
		out := NewOutbox(store, dests(rc.srv.URL))
		for range k {
			if err := out.Notify(ctx, event(Deployed)); err != nil {
				t.Fatal(err)
			}
		}
	}
	restarts := 0
	kill := func() {
		// Attempts in flight when slipway is killed: claimed, never recorded.
		due, err := store.DueNotifications(ctx, clock.Now(), 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range due {
			if _, err := store.ClaimNotification(ctx, &n, clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		store.Close()
		restarts++
		open()
	}
	steps := []struct {
		at time.Duration
		do func()
	}{
		{0, func() { write(50) }},
		{3 * time.Minute, kill},
		{5 * time.Minute, func() { write(50) }},
		{7*time.Minute + 30*time.Second, kill},
	}
	for i := 0; i < 10000; i++ {
		next, ok, err := store.NextNotificationDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(steps) > 0 && (!ok || !next.Before(start.Add(steps[0].at))):
			clock.Set(start.Add(steps[0].at))
			steps[0].do()
			steps = steps[1:]
		case ok:
			clock.Set(next)
		default:
			i = 10000
			continue
		}
		if err := NewDeliverer(store, nil, opt).DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	defer store.Close()

	rows, err := store.Notifications(ctx, ledger.NotificationFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	arrived := map[string]int{}
	for _, d := range rc.deliveries() {
		arrived[d.ID]++
	}
	var last time.Time
	maxAttempts, missing := 0, 0
	for _, n := range rows {
		if n.State != ledger.NotificationDelivered || arrived[n.DeliveryID] == 0 {
			missing++
		}
		last = maxTime(last, n.DeliveredAt)
		maxAttempts = max(maxAttempts, n.Attempts)
	}
	t.Logf("%d events, %d restarts, %d requests while down and after; all delivered %s after the receiver came back; at most %d attempts for one event",
		len(rows), restarts, len(rc.deliveries()), last.Sub(upAt), maxAttempts)
	if len(rows) != 100 || missing != 0 || len(arrived) != 100 {
		t.Errorf("%d rows, %d not delivered, %d distinct ids arrived; want 100, 0, 100", len(rows), missing, len(arrived))
	}
	if restarts != 2 {
		t.Errorf("%d restarts, want 2", restarts)
	}
	// The backoff doubles up to 10 min: nothing waits longer than that
	// after the receiver is back.
	if last.Sub(upAt) > 10*time.Minute {
		t.Errorf("last delivery %s after the receiver came back, want at most 10m", last.Sub(upAt))
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
