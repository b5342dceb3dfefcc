package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"example.com/birthday-app/internal/birthday"
	"example.com/birthday-app/internal/dbtest"
	"example.com/birthday-app/internal/store"
)

type fixture struct {
	srv  *Server
	reg  *prometheus.Registry
	logs *bytes.Buffer
}

func newFixture(t *testing.T, st Store, now time.Time, zone string) *fixture {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := &bytes.Buffer{}
	srv := New(Config{
		Store:        st,
		NotFound:     store.ErrNotFound,
		Logger:       slog.New(slog.NewJSONHandler(logs, nil)),
		Now:          func() time.Time { return now },
		Location:     loc,
		Version:      Version{Commit: "0123456789abcdef0123456789abcdef01234567", GoVersion: "go1.x"},
		Registerer:   reg,
		Gatherer:     reg,
		ReadyTimeout: 100 * time.Millisecond,
	})
	return &fixture{srv: srv, reg: reg, logs: logs}
}

func sqliteStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dbtest.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type response struct {
	Code  int
	Allow string
	Body  string
}

func (f *fixture) do(method, path, body string) response {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, req)
	return response{Code: rec.Code, Allow: rec.Header().Get("Allow"), Body: rec.Body.String()}
}

func TestAPI(t *testing.T) {
	// 22:30 UTC on 14 June is already 15 June in Tokyo.
	now := time.Date(2024, 6, 14, 22, 30, 0, 0, time.UTC)
	f := newFixture(t, sqliteStore(t), now, "Asia/Tokyo")
	steps := []struct {
		method, path, body string
		want               response
	}{
		{"PUT", "/hello/Ann", `{"dateOfBirth":"1990-06-15"}`, response{Code: 204}},
		{"GET", "/hello/Ann", "", response{Code: 200, Body: `{"message":"Hello, Ann! Happy birthday!"}`}},
		{"PUT", "/hello/Bob", `{"dateOfBirth":"1990-06-16","nickname":"B"}`, response{Code: 204}},
		{"GET", "/hello/Bob", "", response{Code: 200, Body: `{"message":"Hello, Bob! Your birthday is in 1 day"}`}},
		{"PUT", "/hello/Bob", `{"dateOfBirth":"2024-02-29"}`, response{Code: 204}},
		{"GET", "/hello/Bob", "", response{Code: 200, Body: `{"message":"Hello, Bob! Your birthday is in 258 days"}`}},
		{"GET", "/hello/bob", "", response{Code: 404, Body: `{"error":"user bob not found"}`}},
		{"GET", "/hello/b0b", "", response{Code: 404, Body: `{"error":"user b0b not found"}`}},
		{"PUT", "/hello/Cy", `{"dateOfBirth":"2024-06-15"}`, response{Code: 400, Body: `{"error":"dateOfBirth must be a date before today (2024-06-15)"}`}},
		{"PUT", "/hello/Cy", `{"dateOfBirth":"2024-06-14"}`, response{Code: 204}},
		{"PUT", "/hello/Cy", `{}`, response{Code: 400, Body: `{"error":"dateOfBirth is required"}`}},
		{"PUT", "/hello/C1", `{"dateOfBirth":"2000-01-01"}`, response{Code: 400, Body: `{"error":"username must contain only letters (A-Z, a-z)"}`}},
		{"PUT", "/hello/" + strings.Repeat("a", 257), `{"dateOfBirth":"2000-01-01"}`, response{Code: 400, Body: `{"error":"username must be at most 256 letters long"}`}},
		{"PUT", "/hello/Cy", `{"dateOfBirth":"2000-01-01","pad":"` + strings.Repeat("x", 1000) + `"}`, response{Code: 413, Body: `{"error":"body must be at most 1024 bytes"}`}},
		{"PUT", "/hello/Cy", `{"dateOfBirth":"2000-01-01","pad":"` + strings.Repeat("x", 1024-38) + `"}`, response{Code: 204}},
		{"POST", "/hello/Ann", "", response{Code: 405, Allow: "GET, HEAD, PUT", Body: `{"error":"method POST is not allowed on /hello/{username}; use GET, HEAD, PUT"}`}},
		{"DELETE", "/healthz", "", response{Code: 405, Allow: "GET, HEAD", Body: `{"error":"method DELETE is not allowed on /healthz; use GET, HEAD"}`}},
		{"GET", "/hello/", "", response{Code: 404, Body: `{"error":"no such path: /hello/"}`}},
		{"GET", "/hello/Ann/x", "", response{Code: 404, Body: `{"error":"no such path: /hello/Ann/x"}`}},
		{"GET", "/", "", response{Code: 404, Body: `{"error":"no such path: /"}`}},
		{"GET", "/healthz", "", response{Code: 200, Body: `{"status":"ok"}`}},
		{"GET", "/readyz", "", response{Code: 200, Body: `{"status":"ok"}`}},
		{"GET", "/statusz", "", response{Code: 200, Body: `{"status":"ok"}`}},
		{"GET", "/version", "", response{Code: 200, Body: `{"commit":"0123456789abcdef0123456789abcdef01234567","modified":false,"goVersion":"go1.x"}`}},
	}
	for i, s := range steps {
		if got := f.do(s.method, s.path, s.body); !cmp.Equal(s.want, got) {
			t.Errorf("step %d: %s %.40s: mismatch (-want +got):\n%s", i, s.method, s.path, cmp.Diff(s.want, got))
		}
	}

	// One JSON log line per request, with method, path, status and duration.
	lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
	if len(lines) != len(steps) {
		t.Fatalf("got %d log lines for %d requests:\n%s", len(lines), len(steps), f.logs)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("log line is not JSON: %v\n%s", err, lines[0])
	}
	for k, want := range map[string]any{"msg": "request", "method": "PUT", "path": "/hello/Ann", "status": float64(204)} {
		if first[k] != want {
			t.Errorf("log line %s = %v, want %v: %s", k, first[k], want, lines[0])
		}
	}
	if _, ok := first["durationMs"].(float64); !ok {
		t.Errorf("log line has no numeric durationMs: %s", lines[0])
	}

	if got := testutil.ToFloat64(f.srv.metrics.requests.WithLabelValues("/hello/{username}", "PUT", "204")); got != 5 {
		t.Errorf("requests{PUT 204} = %v, want 5", got)
	}
	if got := testutil.ToFloat64(f.srv.metrics.requests.WithLabelValues("unmatched", "GET", "404")); got != 3 {
		t.Errorf("requests{unmatched GET 404} = %v, want 3", got)
	}
	metrics := f.do("GET", "/metrics", "")
	for _, want := range []string{
		`birthday_http_requests_total{code="200",method="GET",route="/hello/{username}"} 3`,
		`birthday_http_request_duration_seconds_bucket{route="/hello/{username}",le="+Inf"}`,
		`birthday_db_errors_total{op="get"} 0`,
	} {
		if !strings.Contains(metrics.Body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics.Body)
		}
	}
}

// failingStore fails every call, or blocks until the context ends.
type failingStore struct{ block bool }

func (s failingStore) wait(ctx context.Context) error {
	if s.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return errors.New("connection refused")
}
func (s failingStore) Get(ctx context.Context, _ string) (birthday.Date, error) {
	return birthday.Date{}, s.wait(ctx)
}
func (s failingStore) Put(ctx context.Context, _ string, _ birthday.Date) error { return s.wait(ctx) }
func (s failingStore) Ping(ctx context.Context) error                           { return s.wait(ctx) }

func TestDatabaseFailures(t *testing.T) {
	f := newFixture(t, failingStore{}, time.Now(), "UTC")
	if got, want := f.do("GET", "/hello/Ann", ""), (response{Code: 500, Body: `{"error":"the database is unavailable; try again later"}`}); !cmp.Equal(want, got) {
		t.Errorf("GET with a failing database (-want +got):\n%s", cmp.Diff(want, got))
	}
	if got := f.do("PUT", "/hello/Ann", `{"dateOfBirth":"2000-01-01"}`); got.Code != 500 {
		t.Errorf("PUT with a failing database: %+v, want 500", got)
	}
	if got := f.do("GET", "/healthz", ""); got.Code != 200 {
		t.Errorf("/healthz with a failing database: %+v, want 200: liveness must not depend on the database", got)
	}
	want := response{Code: 503, Body: `{"status":"unavailable","error":"the database did not answer"}`}
	if got := f.do("GET", "/readyz", ""); !cmp.Equal(want, got) {
		t.Errorf("/readyz with a failing database (-want +got):\n%s", cmp.Diff(want, got))
	}
	for op, want := range map[string]float64{"get": 1, "put": 1, "ping": 1} {
		if got := testutil.ToFloat64(f.srv.metrics.dbErrors.WithLabelValues(op)); got != want {
			t.Errorf("db errors{%s} = %v, want %v", op, got, want)
		}
	}
	if !strings.Contains(f.logs.String(), `"error":"connection refused"`) {
		t.Errorf("the request log does not carry the database error:\n%s", f.logs)
	}

	// A database that does not answer makes /readyz fail after ReadyTimeout.
	hung := newFixture(t, failingStore{block: true}, time.Now(), "UTC")
	if got := hung.do("GET", "/statusz", ""); got.Code != 503 {
		t.Errorf("/statusz with a hung database: %+v, want 503", got)
	}
}

func TestDrain(t *testing.T) {
	f := newFixture(t, sqliteStore(t), time.Now(), "UTC")
	f.srv.Drain()
	want := response{Code: 503, Body: `{"status":"draining","error":"the server is shutting down"}`}
	for _, path := range []string{"/readyz", "/statusz"} {
		if got := f.do("GET", path, ""); !cmp.Equal(want, got) {
			t.Errorf("%s while draining (-want +got):\n%s", path, cmp.Diff(want, got))
		}
	}
	// The API and liveness keep working while the server drains.
	if got := f.do("PUT", "/hello/Ann", `{"dateOfBirth":"2000-01-01"}`); got.Code != 204 {
		t.Errorf("PUT while draining: %+v, want 204", got)
	}
	if got := f.do("GET", "/healthz", ""); got.Code != 200 {
		t.Errorf("/healthz while draining: %+v, want 200", got)
	}
}

func TestBodyReadError(t *testing.T) {
	f := newFixture(t, sqliteStore(t), time.Now(), "UTC")
	req := httptest.NewRequest("PUT", "/hello/Ann", io.NopCloser(errReader{}))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("PUT with an unreadable body: %d %s, want 400", rec.Code, rec.Body)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }
