package apps

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/dora"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// DORA reads lead times from the app's real repository: from the earliest
// author time of the commits a release brought to when it went live.
func TestDORALeadTimesFromGit(t *testing.T) {
	testenv.LookPath(t, "git")
	ctx := context.Background()
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin.git")
	git := func(date string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@x", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@x",
			"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("", "init", "-q", "--bare", "-b", "master", origin)
	work := filepath.Join(dir, "work")
	git("", "clone", "-q", origin, work)
	commit := func(date string) string {
		git(date, "-C", work, "commit", "-q", "--allow-empty", "-m", "at "+date)
		git(date, "-C", work, "push", "-q", "origin", "HEAD:master")
		return git(date, "-C", work, "rev-parse", "HEAD")
	}
	c1 := commit("2026-11-20T10:00:00Z")
	_ = commit("2026-11-21T10:00:00Z") // c2: the first commit of R2
	c3 := commit("2026-11-22T08:00:00Z")
	c4 := commit("2026-11-22T09:00:00Z")

	store, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	set, err := config.ParseSet("slipway.yaml", strings.NewReader(`
apps:
  - app: shop
    repo: {url: `+origin+`}
    environments:
      - {name: dev, listen: "127.0.0.1:18081"}
      - {name: prod, listen: "127.0.0.1:18080"}
`))
	if err != nil {
		t.Fatal(err)
	}
	all, err := Open(ctx, Options{Set: set, DataDir: dir, RegistryAddr: "127.0.0.1:1", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	shop := all.All()[0]
	if err := shop.Source.Fetch(ctx); err != nil {
		t.Fatal(err)
	}

	var now time.Time
	store.SetClock(func() time.Time { return now })
	release := func(commit, live string) {
		t.Helper()
		end, err := time.Parse(time.RFC3339, live)
		if err != nil {
			t.Fatal(err)
		}
		now = end.Add(-5 * time.Minute)
		d := &ledger.Deployment{Env: "prod", Kind: ledger.KindRelease, Trigger: "test", Commit: commit, State: ledger.StatePending}
		if err := shop.deps.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		now = end
		d.State, d.Step = ledger.StateSucceeded, "live"
		if err := shop.deps.Update(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	release(c1, "2026-11-20T12:00:00Z")                      // R1: before the window
	release(c3, "2026-11-22T12:00:00Z")                      // R2: c2 and c3; c2 written 26h before
	release(c4, "2026-11-22T15:00:00Z")                      // R3: c4, written 6h before
	release(strings.Repeat("f", 40), "2026-11-23T15:00:00Z") // R4: a commit the repository does not have
	now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

	for range 2 { // the second time from what the first one kept
		r, err := shop.DORA(ctx, 7*dora.Day)
		if err != nil {
			t.Fatal(err)
		}
		// Lead times 6h and 26h: median 16h, p90 26h.
		if r.App != "shop" || r.Window != "7d" || r.Deployments != 3 || r.LeadTimes != 2 ||
			r.LeadTimeMedian != 16*time.Hour || r.LeadTimeP90 != 26*time.Hour {
			t.Errorf("report: app %q window %s, %d deployments, %d lead times, median %s, p90 %s; want shop 7d, 3, 2, 16h, 26h",
				r.App, r.Window, r.Deployments, r.LeadTimes, r.LeadTimeMedian, r.LeadTimeP90)
		}
	}
	// Kept: the 2 that git answered, and that it could not answer for R4.
	known := 0
	for _, f := range shop.firstCommits.times {
		if f.known {
			known++
		}
	}
	if n := len(shop.firstCommits.times); n != 3 || known != 2 {
		t.Errorf("first commits kept: %d, %d known; want 3, 2", n, known)
	}

	// What ended since the last report is read; so is a deployment whose
	// end was written late, and everything after ten minutes.
	release(c3, "2026-11-28T12:05:00Z")
	now = time.Date(2026, 11, 28, 12, 10, 0, 0, time.UTC)
	if r, err := shop.DORA(ctx, 7*dora.Day); err != nil || r.Deployments != 4 {
		t.Errorf("after a new release: %d deployments, %v; want 4", r.Deployments, err)
	}
	release(c4, "2026-11-28T11:30:00Z") // ended 40 minutes before the last one, written now
	now = time.Date(2026, 11, 28, 12, 11, 0, 0, time.UTC)
	if r, err := shop.DORA(ctx, 7*dora.Day); err != nil || r.Deployments != 5 {
		t.Errorf("after a release written late: %d deployments, %v; want 5", r.Deployments, err)
	}
	if r, err := shop.DORA(ctx, 30*dora.Day); err != nil || r.Deployments != 6 || r.Window != "30d" {
		t.Errorf("over 30 days: %d deployments in %s, %v; want 6 (R1 too) in 30d", r.Deployments, r.Window, err)
	}
	if _, err := shop.DORA(ctx, 0); err == nil {
		t.Errorf("DORA over no time: no error")
	}

	// Warmed, the 90 days are read in full and kept, with the first
	// commits: the next report reads only what ended since.
	shop.ended = endedDeployments{}
	shop.firstCommits = firstCommits{}
	all.warmDORA(ctx)
	if shop.ended.rows == nil || !shop.ended.at.Equal(now) || !shop.ended.from.Equal(now.Add(-90*dora.Day)) {
		t.Errorf("warmed: %d rows from %s read at %s; want the 90 days before %s", len(shop.ended.rows), shop.ended.from, shop.ended.at, now)
	}
	if len(shop.firstCommits.times) == 0 {
		t.Error("warmed: no first commit read")
	}
}

// BenchmarkDORAKept is the report of an app whose final environment ended
// 100,000 deployments in 90 days, after a first report: from what it kept,
// with only what ended in the last hour read again, and the first commits
// already read from git (docs/benchmarks.md).
func BenchmarkDORAKept(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	store, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	until := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	since := until.Add(-90 * dora.Day)
	if _, err := store.DB().ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999)
		INSERT INTO deployments (app, env, kind, trigger, commit_sha, state, step, release_name, created_at, updated_at, finished_at)
		SELECT 'shop', 'prod', CASE WHEN i % 50 = 49 THEN 'rollback' WHEN i % 20 = 7 THEN 'scale' ELSE 'release' END, 'bench',
			printf('%040x', i), CASE WHEN i % 10 = 3 THEN 'rolled-back' ELSE 'succeeded' END, 'live', printf('RC%08d', i),
			strftime('%Y-%m-%dT%H:%M:%S.000000000Z', ?1, printf('+%d seconds', i * 77)),
			strftime('%Y-%m-%dT%H:%M:%S.000000000Z', ?1, printf('+%d seconds', i * 77 + 60)),
			strftime('%Y-%m-%dT%H:%M:%S.000000000Z', ?1, printf('+%d seconds', i * 77 + 60))
		FROM n`, since.Format(time.DateTime)); err != nil {
		b.Fatal(err)
	}
	set, err := config.ParseSet("slipway.yaml", strings.NewReader(`
apps:
  - app: shop
    repo: {url: `+filepath.Join(dir, "none.git")+`}
    environments:
      - {name: dev, listen: "127.0.0.1:18081"}
      - {name: prod, listen: "127.0.0.1:18080"}
`))
	if err != nil {
		b.Fatal(err)
	}
	all, err := Open(ctx, Options{Set: set, DataDir: dir, RegistryAddr: "127.0.0.1:1", Store: store})
	if err != nil {
		b.Fatal(err)
	}
	shop := all.All()[0]
	store.SetClock(func() time.Time { return until })
	// Every change's first commit already read from git, as after the
	// first reports.
	history, err := shop.deps.Outcomes(ctx, "prod", since)
	if err != nil {
		b.Fatal(err)
	}
	dora.Compute(history, func(prev, commit string) (time.Time, bool) {
		shop.firstCommits.put([2]string{prev, commit}, firstCommit{t: since, known: true})
		return since, true
	}, since, until)
	if _, err := shop.DORA(ctx, 90*dora.Day); err != nil { // the first report reads every row
		b.Fatal(err)
	}
	var r dora.Report
	cpu0 := cpuTime(b)
	for b.Loop() {
		if r, err = shop.DORA(ctx, 90*dora.Day); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	if r.Releases < 90_000 {
		b.Fatalf("%d releases: the history was not read", r.Releases)
	}
}

// cpuTime is the CPU time the process has used, user and system: on a
// machine shared with other work, it says what a run costs when the wall
// clock does not.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
