package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"example.com/birthday-app/internal/birthday"
	"example.com/birthday-app/internal/store"
)

// BenchmarkGetHello measures one GET /hello/<username> through the handler,
// with a real SQLite store and request logging, without the network.
func BenchmarkGetHello(b *testing.B) {
	f, st := newBenchServer(b)
	for i := range 1000 {
		if err := st.Put(context.Background(), userName(i), birthday.Date{Year: 1990, Month: 6, Day: 15}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := httptest.NewRequest("GET", "/hello/"+userName(i%1000), nil)
			rec := httptest.NewRecorder()
			f.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			i++
		}
	})
}

// BenchmarkPutHello measures one PUT /hello/<username> through the handler.
func BenchmarkPutHello(b *testing.B) {
	f, _ := newBenchServer(b)
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := httptest.NewRequest("PUT", "/hello/"+userName(i%10000), strings.NewReader(`{"dateOfBirth":"1990-06-15"}`))
			rec := httptest.NewRecorder()
			f.ServeHTTP(rec, req)
			if rec.Code != http.StatusNoContent {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			i++
		}
	})
}

func userName(i int) string {
	return "User" + strings.Map(func(r rune) rune { return 'a' + (r - '0') }, fmt.Sprint(i))
}

// newBenchServer serves a fresh SQLite store and logs JSON lines to nowhere,
// so the cost of formatting them is counted.
func newBenchServer(b *testing.B) (*Server, Store) {
	st := sqliteStore(b)
	return New(Config{Store: st, NotFound: store.ErrNotFound, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}), st
}

// reportCPU adds the process's CPU time (user + system) per operation to the
// results: unlike ns/op, other load on the machine hardly changes it.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	b.ResetTimer()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
