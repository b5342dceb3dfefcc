package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// ledgerApp is a fake app whose status is read from a real ledger the way
// the controller reads it: each environment's current deployment and last
// failure, and the deployment of a rollout in flight.
type ledgerApp struct {
	*fakeApp
	deps *ledger.Deployments
}

func (a *ledgerApp) Status(ctx context.Context) (pipeline.Status, error) {
	st := pipeline.Status{App: a.name, Pending: a.status.Pending}
	for i, env := range a.envs {
		es := pipeline.EnvStatus{Name: env, Mode: "automatic", Tag: "env-" + env, URL: "http://127.0.0.1:" + strconv.Itoa(8080+i)}
		if i == len(a.envs)-1 {
			es.Mode = "controlled"
		}
		cur, err := a.deps.Current(ctx, env)
		if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
			return pipeline.Status{}, err
		}
		if err == nil {
			s := short(cur.Commit)
			es.Commit, es.ShortCommit, es.Digest, es.Image = &cur.Commit, &s, &cur.Digest, &cur.Image
			if cur.ReleaseName != "" {
				es.Release = &cur.ReleaseName
			}
			es.Since = &cur.FinishedAt
			es.Replicas = pipeline.Replicas{Ready: cur.Replicas, Desired: cur.Replicas}
			es.Healthy = true
		}
		if f, err := a.deps.LastFailure(ctx, env, cur.ID); err == nil {
			msg := fmt.Sprintf("%s of %s %s: %s", f.Kind, short(f.Commit), f.State, f.Reason)
			es.LastFailure = &msg
		} else if !errors.Is(err, ledger.ErrNoDeployment) {
			return pipeline.Status{}, err
		}
		if i == 0 {
			// A rollout in flight on the first environment.
			es.Rollout = &pipeline.Rollout{ID: cur.ID, Kind: "deploy", Commit: cur.Commit, Step: "health"}
		}
		st.Environments = append(st.Environments, es)
	}
	return st, nil
}

func (a *ledgerApp) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	return a.deps.Get(ctx, id)
}

// fillLedger writes perEnv deployments of each app × env: mostly
// successes, one in ten failed, the last environment's as releases.
func fillLedger(tb testing.TB, store *ledger.Store, apps, envs []string, perEnv int) {
	tb.Helper()
	ctx := context.Background()
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO deployments (app, env, kind, trigger, commit_sha, image, digest,
		release_name, replicas, previous_id, state, step, reason, forced, force_reason, note,
		created_at, updated_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const tf = "2006-01-02T15:04:05.000000000Z"
	for n := range perEnv {
		for _, app := range apps {
			for ei, env := range envs {
				kind, rel, state, step, reason := "deploy", "", "succeeded", "verified", ""
				if ei == len(envs)-1 {
					kind, rel, step = "release", fmt.Sprintf("RC%06d", n), "live"
				}
				if n%10 == 7 {
					state, reason = "failed", "2 of 4 replicas ready after 1m0s"
				}
				commit := fmt.Sprintf("%040x", n*1000+ei)
				at := start.Add(time.Duration(n) * time.Minute).Format(tf)
				if _, err := stmt.ExecContext(ctx, app, env, kind, "push to master", commit, "127.0.0.1:5000/"+app+"@sha256:"+strings.Repeat("ab", 32),
					"sha256:"+strings.Repeat("ab", 32), rel, 4, 0, state, step, reason, false, "", "", at, at, at); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

var (
	benchLedgerOnce sync.Once
	benchLedgerPath string
	benchLedgerErr  error
)

// benchApps returns 10 apps × 3 environments over a ledger holding 10,000
// deployments of each app × environment (300,000 rows), made once per run.
func benchApps(b *testing.B) appList {
	apps := make([]string, 10)
	for i := range apps {
		apps[i] = fmt.Sprintf("app%02d", i)
	}
	envs := []string{"dev", "staging", "prod"}
	benchLedgerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "slipway-web-bench-")
		if err != nil {
			benchLedgerErr = err
			return
		}
		benchLedgerPath = filepath.Join(dir, ledger.FileName)
		store, err := ledger.Open(context.Background(), benchLedgerPath)
		if err != nil {
			benchLedgerErr = err
			return
		}
		defer store.Close()
		fillLedger(b, store, apps, envs, 10000)
	})
	if benchLedgerErr != nil {
		b.Fatal(benchLedgerErr)
	}
	store, err := ledger.Open(context.Background(), benchLedgerPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	pending := sampleApp("x").status.Pending
	var out appList
	for _, name := range apps {
		f := &fakeApp{name: name, envs: envs, status: pipeline.Status{Pending: pending}}
		out = append(out, &ledgerApp{fakeApp: f, deps: store.Deployments().ForApp(name)})
	}
	return out
}

// BenchmarkOverview serves the overview of 10 apps × 3 environments over a
// ledger of 300,000 deployments: the server's time per page.
func BenchmarkOverview(b *testing.B) {
	apps := benchApps(b)
	h := newTestHandler(b, Options{Apps: apps})
	b.ReportAllocs()
	for b.Loop() {
		w := do(h, "GET", "/", local, nil, nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "app09") {
			b.Fatalf("overview: %d", w.Code)
		}
	}
}

// BenchmarkAppPage serves one app's pipeline page over the same ledger.
func BenchmarkAppPage(b *testing.B) {
	apps := benchApps(b)
	h := newTestHandler(b, Options{Apps: apps})
	b.ReportAllocs()
	for b.Loop() {
		if w := do(h, "GET", "/apps/app03", local, nil, nil); w.Code != http.StatusOK {
			b.Fatalf("app page: %d", w.Code)
		}
	}
}

// rss is the process's resident set size, from /proc.
func rss(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status to read the RSS from: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	tb.Skip("no VmRSS in /proc/self/status")
	return 0
}

// fanOut opens n event streams on a real server and returns a function
// that makes a change and waits until every stream has shown it.
func fanOut(tb testing.TB, n int) (change func(i int) time.Duration, rssGrowth, goGrowth int64) {
	app := sampleApp("web")
	hub := newFakeHub()
	h := newTestHandler(tb, Options{Apps: &fakeApps{apps: []*fakeApp{app}}, Subscribe: hub.Subscribe, ReplicaRefresh: time.Hour})
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	before, goBefore := rss(tb), goMemory()
	type update struct {
		stream int
		data   string
	}
	updates := make(chan update, n)
	var ready sync.WaitGroup
	for i := range n {
		ready.Add(1)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
		res, err := client.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { res.Body.Close() })
		go func() {
			rd := bufio.NewReader(res.Body)
			first := true
			for {
				ev, err := readEvent(rd)
				if err != nil {
					return
				}
				if first {
					first = false
					ready.Done()
					continue
				}
				updates <- update{i, ev}
			}
		}()
	}
	ready.Wait()
	rssGrowth, goGrowth = rss(tb)-before, goMemory()-goBefore
	change = func(k int) time.Duration {
		marker := fmt.Sprintf("change-%d", k)
		app.setStatus(func(st *pipeline.Status) { st.Environments[0].URL = "http://" + marker })
		start := time.Now()
		hub.Publish("web")
		seen := 0
		timeout := time.After(10 * time.Second)
		for seen < n {
			select {
			case u := <-updates:
				if strings.Contains(u.data, marker) {
					seen++
				}
			case <-timeout:
				tb.Fatalf("after 10 s only %d of %d streams showed the change", seen, n)
			}
		}
		return time.Since(start)
	}
	return change, rssGrowth, goGrowth
}

// goMemory is the heap and stacks in use after a collection.
func goMemory() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// TestChangeReaches100Streams checks the targets: a change reaches 100
// open streams in under a second, and the streams cost under 20 MiB.
func TestChangeReaches100Streams(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 100 streams; skipped with -short")
	}
	change, growth, goGrowth := fanOut(t, 100)
	var worst time.Duration
	for k := range 5 {
		worst = max(worst, change(k))
	}
	t.Logf("slowest of 5 changes reached all 100 streams in %s; with 100 streams RSS grew %.1f MiB, Go heap and stacks %.1f MiB (server and clients in one process)",
		worst, float64(growth)/(1<<20), float64(goGrowth)/(1<<20))
	if worst > time.Second {
		t.Errorf("a change took %s to reach 100 streams, want < 1s", worst)
	}
	if raceEnabled {
		t.Log("not checking memory: the race detector multiplies it")
	} else if growth > 20<<20 {
		t.Errorf("RSS grew %.1f MiB with 100 streams, want < 20 MiB", float64(growth)/(1<<20))
	}
}

// BenchmarkFanOut100 is the time from a change to its arrival on all of
// 100 open streams.
func BenchmarkFanOut100(b *testing.B) {
	change, _, goGrowth := fanOut(b, 100)
	k := 0
	for b.Loop() {
		change(k)
		k++
	}
	b.ReportMetric(float64(goGrowth)/(1<<20), "MiB-go-mem-100-streams")
}
