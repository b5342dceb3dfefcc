//go:build integration

package crash

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/deploy/local"
)

// TestSupervisorClockJumps moves the wall clock of the local runtime's
// supervisors an hour ahead, then an hour back (local.EnvClockJump: the
// supervisors of this serve only, not the machine's clock), under load on
// dev and prod: a push rolls out on dev and staging and a release on prod
// (new replicas waited for within their readiness timeout, old ones
// drained) with the clock ahead; with it back, a release whose replicas
// exit at start is detected as crash-looping, fails and is undone. Nothing
// times out early, nothing waits an hour, no request fails.
func TestSupervisorClockJumps(t *testing.T) {
	t.Parallel()
	slipwayBinary(t)
	started := time.Now()
	w := newWorld(t, false)
	jump := filepath.Join(w.root, "clock-jump")
	if err := os.WriteFile(jump, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = []string{local.EnvClockJump + "=@" + jump}
	w.startServe()
	c0 := gitOut(w.ws.Bare, "rev-parse", "master")
	w.waitFor("c0 on dev, staging and prod", func() bool {
		st, ok := w.status()
		return ok && runs(st, "dev", c0) && runs(st, "staging", c0) && runs(st, "prod", c0)
	})
	t.Logf("baseline after %s", time.Since(started).Round(time.Second))
	loads := map[string]*load{"dev": startLoad(w.urls["dev"], 2), "prod": startLoad(w.urls["prod"], 4)}
	ctx := context.Background()

	setJump := func(d time.Duration) time.Time {
		if err := os.WriteFile(jump, []byte(d.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	// jumped checks that env's replicas that changed state after the jump
	// at went by the jumped clock, d off the machine's: the jump reached
	// the supervisors.
	jumped := func(env string, at time.Time, d time.Duration) {
		t.Helper()
		st, _ := w.status()
		n := 0
		for _, in := range envOf(st, env).Instances {
			if off := in.Since.Sub(at); off > d-time.Minute && off < d+20*time.Minute {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no replica of %s went by a wall clock %s off after the jump: %+v", env, d, envOf(st, env).Instances)
		}
	}

	// An hour ahead: a push to dev and staging, and its release to prod.
	at := setJump(time.Hour)
	began := time.Now()
	c1 := w.push("rolled out with the clock an hour ahead")
	w.waitFor("c1 on dev and staging", func() bool {
		st, ok := w.status()
		return ok && runs(st, "dev", c1) && runs(st, "staging", c1)
	})
	if _, err := w.client().Release(ctx, "", api.ReleaseRequest{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor("c1 on prod", func() bool {
		st, ok := w.status()
		return ok && runs(st, "prod", c1) && w.inFlight() == 0
	})
	t.Logf("+1h: push and release of c1 in %s", time.Since(began).Round(time.Second))
	jumped("dev", at, time.Hour)
	jumped("prod", at, time.Hour)

	// An hour back: a release whose replicas exit at start on prod.
	at = setJump(-time.Hour)
	began = time.Now()
	bad := "package main\n\nimport \"os\"\n\nfunc init() {\n\tif os.Getenv(\"CRASH_PROD\") != \"\" {\n\t\tos.Exit(3)\n\t}\n}\n"
	if err := os.WriteFile(filepath.Join(w.ws.Clone, "zz_prod_only.go"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	c2 := w.push("fails on prod, with the clock an hour back")
	w.waitFor("c2 on staging", func() bool { st, ok := w.status(); return ok && runs(st, "staging", c2) })
	jumped("dev", at, -time.Hour)
	if _, err := w.client().Release(ctx, "", api.ReleaseRequest{}); err != nil {
		t.Fatal(err)
	}
	var failure string
	w.waitFor("the release of c2 failed and undone, c1 on prod", func() bool {
		st, ok := w.status()
		if !ok || !runs(st, "prod", c1) || w.inFlight() != 0 {
			return false
		}
		failure = deref(envOf(st, "prod").LastFailure)
		return strings.Contains(failure, c2[:7])
	})
	if !strings.Contains(failure, "exited 3 times before becoming ready") {
		t.Errorf("prod's last failure = %q, want the replicas' crash loop", failure)
	}
	t.Logf("-1h: c2 to dev and staging, its release failed and undone in %s: %s", time.Since(began).Round(time.Second), failure)

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
	for _, msg := range p {
		t.Error(msg)
	}
	if t.Failed() {
		t.Logf("serve's log:\n%s", w.serveLog())
	}
	t.Logf("took %s", time.Since(started).Round(time.Second))
}
