package notify

import (
	"context"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// TestOutboxSurvivesReopen: a row whose first attempt failed is delivered,
// with the same id, by a Deliverer of the ledger reopened (a restart).
func TestOutboxSurvivesReopen(t *testing.T) {
	var up atomic.Bool
	rc := newReceiver(t, func(*http.Request, int) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusBadGateway
	})
	path := filepath.Join(t.TempDir(), "ledger.db")
	clock := newFakeClock()
	opt := fastOptions()
	opt.Now = clock.Now
	ctx := context.Background()

	store := openStore(t, path)
	store.SetClock(clock.Now)
	if err := NewOutbox(store, dests(rc.srv.URL)).Notify(ctx, event(Deployed)); err != nil {
		t.Fatal(err)
	}
	if err := NewDeliverer(store, nil, opt).DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	store.Close()

	up.Store(true)
	clock.Advance(time.Second)
	store = openStore(t, path)
	defer store.Close()
	store.SetClock(clock.Now)
	if err := NewDeliverer(store, nil, opt).DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	ns, _ := store.Notifications(ctx, ledger.NotificationFilter{Limit: 10})
	got := rc.deliveries()
	if len(ns) != 1 || ns[0].State != ledger.NotificationDelivered || ns[0].Attempts != 2 || len(got) != 2 || got[0].ID != got[1].ID || got[1].ID != ns[0].DeliveryID {
		t.Errorf("after a restart: rows %+v, requests %+v; want one row delivered at its second attempt, the same id twice", ns, got)
	}
}

// TestInterruptedAttemptResent: an attempt cut short by a stop (the
// receiver got the request, slipway never recorded the answer) is sent
// again at the next start with the same delivery id, before its backoff.
func TestInterruptedAttemptResent(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	rc := newReceiver(t, func(r *http.Request, n int) int {
		if n == 1 {
			stop() // slipway stops while the receiver answers
			<-r.Context().Done()
		}
		return http.StatusOK
	})
	path := filepath.Join(t.TempDir(), "ledger.db")
	clock := newFakeClock()
	opt := fastOptions()
	opt.Now = clock.Now
	store := openStore(t, path)
	store.SetClock(clock.Now)
	if err := NewOutbox(store, dests(rc.srv.URL)).Notify(context.Background(), event(BreakGlass)); err != nil {
		t.Fatal(err)
	}
	if err := NewDeliverer(store, nil, opt).Run(ctx); err != context.Canceled {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	store.Close()

	store = openStore(t, path)
	defer store.Close()
	store.SetClock(clock.Now) // the clock has not moved: only an interrupted row is due
	if err := NewDeliverer(store, nil, opt).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	ns, _ := store.Notifications(context.Background(), ledger.NotificationFilter{Limit: 10})
	got := rc.deliveries()
	if len(got) != 2 || got[0].ID != got[1].ID || ns[0].State != ledger.NotificationDelivered {
		t.Fatalf("requests %+v, row %+v; want the same delivery twice, then delivered", got, ns[0])
	}
}

// TestGiveUp: a destination that never answers 2xx is tried for a day,
// then the row is failed for good.
func TestGiveUp(t *testing.T) {
	rc := newReceiver(t, func(*http.Request, int) int { return http.StatusServiceUnavailable })
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	clock := newFakeClock()
	store.SetClock(clock.Now)
	opt := Options{Now: clock.Now, Secret: secret} // the real backoff: 1s doubling to 10min, for 24h
	ctx := context.Background()
	if err := NewOutbox(store, dests(rc.srv.URL)).Notify(ctx, event(Released)); err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	dl := NewDeliverer(store, nil, opt)
	for range 1000 {
		if err := dl.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		next, ok, err := store.NextNotificationDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		clock.Set(next)
	}
	ns, _ := store.Notifications(ctx, ledger.NotificationFilter{Limit: 1})
	n := ns[0]
	tried := n.LastAttemptAt.Sub(start)
	t.Logf("given up after %d attempts over %s", n.Attempts, tried)
	if n.State != ledger.NotificationFailed || tried < 24*time.Hour || tried > 24*time.Hour+10*time.Minute {
		t.Errorf("row %+v, last attempt %s after it was written; want failed after 24h (within one backoff)", n, tried)
	}
	// 1+2+…+512 s is 1023 s, then every 10 min until 24 h: 10 + 1 + 143 attempts.
	if n.Attempts < 150 || n.Attempts > 160 || len(rc.deliveries()) != n.Attempts {
		t.Errorf("%d attempts recorded, %d received; want about 154, the same", n.Attempts, len(rc.deliveries()))
	}
}
