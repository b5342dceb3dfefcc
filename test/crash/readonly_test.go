//go:build integration

package crash

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// TestLedgerReadOnlyWhileRunning makes the ledger read-only while serve
// runs, in the middle of a push's build (its tests take 20 s), under load
// on dev and prod: the ledger's file and its write-ahead log are made
// immutable (chattr +i, which stops root too, through the descriptors
// serve has open). Status says that the ledger is read-only and what to
// do, and so does the log; the environments keep serving; once the files
// are writable again the push goes on by itself and reaches dev and
// staging, with every build and deployment recorded to its end.
func TestLedgerReadOnlyWhileRunning(t *testing.T) {
	t.Parallel()
	testenv.LookPath(t, "chattr")
	slipwayBinary(t)
	started := time.Now()
	w := newWorld(t, false)
	w.startServe()
	c0 := gitOut(w.ws.Bare, "rev-parse", "master")
	w.waitFor("c0 on dev, staging and prod", func() bool {
		st, ok := w.status()
		return ok && runs(st, "dev", c0) && runs(st, "staging", c0) && runs(st, "prod", c0)
	})
	t.Logf("baseline after %s", time.Since(started).Round(time.Second))
	loads := map[string]*load{"dev": startLoad(w.urls["dev"], 2), "prod": startLoad(w.urls["prod"], 4)}

	test := fmt.Sprintf("package main\n\nimport (\n\t\"testing\"\n\t\"time\"\n)\n\nfunc TestSlow(t *testing.T) { time.Sleep(%d * time.Second) }\n", int(slowTest.Seconds()))
	if err := os.WriteFile(filepath.Join(w.ws.Clone, "zz_slow_test.go"), []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	c1 := w.push("built while the ledger turns read-only")
	w.waitFor("c1's tests to run", func() bool { return w.buildState(c1) == ledger.BuildTesting })

	// Read-only: writes fail, and really so.
	path := filepath.Join(w.ws.DataDir, ledger.FileName)
	files := []string{path, path + "-wal"}
	if out, err := exec.Command("chattr", append([]string{"+i"}, files...)...).CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("chattr +i on %s (root, on a file system with immutable files): %v: %s", path, err, out))
	}
	writable := false
	makeWritable := func() {
		if out, err := exec.Command("chattr", append([]string{"-i"}, files...)...).CombinedOutput(); err != nil {
			t.Errorf("chattr -i: %v: %s", err, out)
		}
		writable = true
	}
	t.Cleanup(func() {
		if !writable {
			makeWritable()
		}
	})
	readOnly := time.Now()
	if err := w.ledgerWrite(); !errors.Is(err, ledger.ErrReadOnly) {
		t.Fatalf("a write to the ledger after chattr +i = %v, want ErrReadOnly", err)
	}

	// Status says so, and what to do, while the environments serve.
	var waiting string
	w.waitFor("status to say that dev's rollout waits for the read-only ledger", func() bool {
		st, ok := w.status()
		if r := envOf(st, "dev").Rollout; ok && r != nil && strings.Contains(r.Waiting, "the ledger is read-only") {
			waiting = r.Waiting
			return true
		}
		return false
	})
	for _, want := range []string{"writable", ledger.FileName} {
		if !strings.Contains(waiting, want) {
			t.Errorf("dev's rollout waits with %q, which lacks %q", waiting, want)
		}
	}
	t.Logf("status after %s read-only: dev waits: %s", time.Since(readOnly).Round(time.Second), waiting)
	if log := w.serveOut.String(); !strings.Contains(log, "the ledger is read-only") {
		t.Errorf("serve's log does not say that the ledger is read-only:\n%s", w.serveLog())
	}
	time.Sleep(5 * time.Second) // more attempts, none of which may fail the push
	makeWritable()
	recovered := time.Now()

	w.waitFor("c1 on dev and staging once the ledger is writable", func() bool {
		st, ok := w.status()
		if !ok || !runs(st, "dev", c1) || !runs(st, "staging", c1) || !runs(st, "prod", c0) {
			return false
		}
		for _, e := range envs {
			if envOf(st, e).Rollout != nil {
				return false
			}
		}
		return w.inFlight() == 0
	})
	t.Logf("read-only for %s; c1 on dev and staging %s after the ledger was writable again",
		recovered.Sub(readOnly).Round(time.Second), time.Since(recovered).Round(time.Second))

	var p problems
	for env, l := range loads {
		ok, failed, first := l.end()
		if ok == 0 || failed > 0 {
			p.add("%s: %d requests failed (first: %v), %d succeeded", env, failed, first, ok)
		}
	}
	w.checkTruth(&p)
	w.checkLedger(&p)
	w.checkLeftovers(&p)
	for _, r := range w.deploymentsAfter(0) {
		if r.State == ledger.StateFailed {
			p.add("deployment %s failed: the push was to wait for the ledger, not fail", r)
		}
	}
	w.checkBuildsFinished(&p)
	for _, msg := range p {
		t.Error(msg)
	}
	if t.Failed() {
		t.Logf("serve's log:\n%s", w.serveLog())
	}
}

// buildState is the state of commit's latest build, or "".
func (w *world) buildState(commit string) ledger.BuildState {
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(w.ws.DataDir, ledger.FileName))
	if err != nil {
		w.t.Fatal(err)
	}
	defer store.Close()
	var st string
	err = store.DB().QueryRowContext(ctx, `SELECT state FROM builds WHERE commit_sha = ? ORDER BY id DESC LIMIT 1`, commit).Scan(&st)
	if err != nil {
		return ""
	}
	return ledger.BuildState(st)
}

// ledgerWrite tries a write to the ledger from another process's point of
// view (a connection of its own), and returns its error explained.
func (w *world) ledgerWrite() error {
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(w.ws.DataDir, ledger.FileName))
	if err != nil {
		return err
	}
	defer store.Close()
	_, err = store.DB().ExecContext(ctx, `UPDATE builds SET reason = reason WHERE id = (SELECT max(id) FROM builds)`)
	return ledger.Explain(err)
}

// checkBuildsFinished checks that every build is recorded as pushed or
// failed, none left as running.
func (w *world) checkBuildsFinished(p *problems) {
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(w.ws.DataDir, ledger.FileName))
	if err != nil {
		p.add("open the ledger: %v", err)
		return
	}
	defer store.Close()
	rows, err := store.DB().QueryContext(ctx, `SELECT id, commit_sha, state, reason FROM builds ORDER BY id`)
	if err != nil {
		p.add("read builds: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var commit, state, reason string
		if err := rows.Scan(&id, &commit, &state, &reason); err != nil {
			p.add("read builds: %v", err)
			return
		}
		w.t.Logf("build %d of %s: %s %s", id, commit[:min(7, len(commit))], state, reason)
		if s := ledger.BuildState(state); s != ledger.BuildPushed && s != ledger.BuildFailed {
			p.add("build %d of %s left %s", id, commit[:min(7, len(commit))], state)
		}
	}
}
