package dora_test

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/dora"
	"slipway.dev/slipway/internal/ledger"
)

// BenchmarkNinetyDays computes an app's metrics over 90 days that hold
// 100,000 deployments of its final environment (a release every 78 s: one
// in ten rolled back by the controller, one in fifty rolled back by
// command, one in twenty a scale), from a real ledger: both queries and
// the computation, with the first commits of the changes already known
// (the apps package keeps them, as they never change). The target is
// < 200 ms per run (docs/benchmarks.md).
func BenchmarkNinetyDays(b *testing.B) {
	ctx := context.Background()
	st, err := ledger.Open(ctx, filepath.Join(b.TempDir(), ledger.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	until := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	since := until.Add(-90 * dora.Day)
	// Rows made by SQLite itself, in the ledger's time format; a second
	// app's rows, and the other environments', are there to be skipped.
	if _, err := st.DB().ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999)
		INSERT INTO deployments (app, env, kind, trigger, commit_sha, state, step, release_name, created_at, updated_at, finished_at)
		SELECT a.app, 'prod',
			CASE WHEN i % 50 = 49 THEN 'rollback' WHEN i % 20 = 7 THEN 'scale' ELSE 'release' END, 'bench',
			printf('%040x', i),
			CASE WHEN i % 10 = 3 THEN 'rolled-back' ELSE 'succeeded' END, 'live', printf('RC%08d', i),
			strftime('%Y-%m-%dT%H:%M:%S.000000000Z', ?, printf('+%d seconds', i * 77)),
			strftime('%Y-%m-%dT%H:%M:%S.000000000Z', ?, printf('+%d seconds', i * 77 + 60)),
			strftime('%Y-%m-%dT%H:%M:%S.000000000Z', ?, printf('+%d seconds', i * 77 + 60))
		FROM n, (SELECT 'web' AS app UNION ALL SELECT 'api') AS a`,
		since.Format(time.DateTime), since.Format(time.DateTime), since.Format(time.DateTime)); err != nil {
		b.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, `INSERT INTO deployments (app, env, kind, trigger, commit_sha, state, created_at, updated_at, finished_at)
		SELECT app, 'dev', 'deploy', trigger, commit_sha, state, created_at, updated_at, finished_at FROM deployments`); err != nil {
		b.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	known := func(prev, commit string) (time.Time, bool) { return since, true }
	l := st.Deployments().ForApp("web")
	var r dora.Report
	cpu0 := cpuTime(b)
	for b.Loop() {
		rows, err := l.Outcomes(ctx, "prod", since)
		if err != nil {
			b.Fatal(err)
		}
		r = dora.Compute(rows, known, since, until)
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	if r.Releases < 90_000 || r.Deployments < 80_000 || r.ChangeFailures < 10_000 {
		b.Fatalf("computed %d releases, %d deployments, %d failures: the history was not read", r.Releases, r.Deployments, r.ChangeFailures)
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
