package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDeliver1000 is "1,000 events delivered to a local receiver":
// 1,000 Notify calls while a Deliverer runs, until the receiver on
// 127.0.0.1 has answered every one, signed, one destination each.
//
//	go test -run '^$' -bench Deliver1000 -benchtime 5x ./internal/notify
func BenchmarkDeliver1000(b *testing.B) {
	const events = 1000
	var got atomic.Int64
	all := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got.Add(1) == events {
			all <- struct{}{}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var notifyTime time.Duration
	for b.Loop() {
		b.StopTimer()
		got.Store(0)
		store := openStore(b, filepath.Join(b.TempDir(), "ledger.db"))
		out := NewOutbox(store, dests(srv.URL))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		go func() { defer close(done); NewDeliverer(store, out.Wakeups(), Options{Secret: secret}).Run(ctx) }()
		t0 := time.Now()
		for range events {
			if err := out.Notify(ctx, event(Deployed)); err != nil {
				b.Fatal(err)
			}
		}
		notifyTime += time.Since(t0)
		<-all
		b.StopTimer()
		cancel()
		<-done
		store.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000-events")
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(notifyTime.Microseconds())/float64(events*b.N), "µs/Notify")
}
