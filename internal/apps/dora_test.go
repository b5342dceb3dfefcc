package apps

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
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
	if _, err := shop.DORA(ctx, 0); err == nil {
		t.Errorf("DORA over no time: no error")
	}
}
