package ledger

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMigrationsApplyOnceInOrder(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", FileName)
	s := openTest(t, path)
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for i, m := range ms {
		if i > 0 && m.Version <= ms[i-1].Version {
			t.Errorf("migrations out of order: %d after %d", m.Version, ms[i-1].Version)
		}
		want = append(want, m.Version)
	}
	got, err := s.AppliedMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if _, err := s.CreateBuild(ctx, Build{App: "a", Commit: "abcd"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopening applies nothing again and keeps the data.
	s2 := openTest(t, path)
	got, err = s2.AppliedMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	if _, err := s2.LatestBuild(ctx, "abcd"); err != nil {
		t.Errorf("build lost on reopen: %v", err)
	}
}

func TestNewerLedgerRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s := openTest(t, path)
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', '')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(ctx, path)
	if err == nil {
		t.Fatal("Open succeeded on a ledger with an unknown migration")
	}
	want := "which this slipway does not know"
	if got := err.Error(); !strings.Contains(got, want) {
		t.Errorf("error = %q, want it to contain %q", got, want)
	}
}

func TestBuildLifecycle(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), FileName))
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { clock = clock.Add(time.Second); return clock })

	const commit = "0123456789abcdef0123456789abcdef01234567"
	b, err := s.CreateBuild(ctx, Build{App: "demo", Commit: commit, Image: "127.0.0.1:5000/demo", Trigger: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == 0 || b.State != BuildQueued {
		t.Fatalf("created %+v, want an id and state queued", b)
	}
	for _, st := range []BuildState{BuildTesting, BuildBuilding} {
		b.State = st
		if err := s.UpdateBuild(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	un, err := s.UnfinishedBuilds(ctx, "")
	if err != nil || len(un) != 1 || un[0].ID != b.ID {
		t.Fatalf("UnfinishedBuilds = %+v, %v; want the building one", un, err)
	}
	b.State, b.Digest, b.TestDuration, b.BuildDuration, b.LogPath = BuildPushed, "sha256:aa", 1500*time.Millisecond, 2*time.Second, "/logs/1.log"
	if err := s.UpdateBuild(ctx, &b); err != nil {
		t.Fatal(err)
	}
	got, err := s.LatestBuild(ctx, commit[:7])
	if err != nil {
		t.Fatal(err)
	}
	want := Build{
		ID: b.ID, App: "demo", Commit: commit, State: BuildPushed, Image: "127.0.0.1:5000/demo", Digest: "sha256:aa",
		TestDuration: 1500 * time.Millisecond, BuildDuration: 2 * time.Second, LogPath: "/logs/1.log", Trigger: "cli",
		Created: time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC), Updated: time.Date(2026, 3, 1, 12, 0, 4, 0, time.UTC),
		Finished: time.Date(2026, 3, 1, 12, 0, 4, 0, time.UTC),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored build (-want +got):\n%s", diff)
	}
	if ref := got.Reference(); ref != "127.0.0.1:5000/demo@sha256:aa" {
		t.Errorf("Reference = %q", ref)
	}
	un, _ = s.UnfinishedBuilds(ctx, "")
	if len(un) != 0 {
		t.Errorf("UnfinishedBuilds after push = %+v, want none", un)
	}
}

func TestLatestBuildLookups(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), FileName))
	for _, c := range []string{"abc1000000000000000000000000000000000000", "abc2000000000000000000000000000000000000", "abc2000000000000000000000000000000000000"} {
		if _, err := s.CreateBuild(ctx, Build{App: "a", Commit: c}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.LatestBuild(ctx, "abc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("3-digit prefix: err = %v, want ErrNotFound (too short)", err)
	}
	if _, err := s.LatestBuild(ctx, "abc0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: err = %v, want ErrNotFound", err)
	}
	if _, err := s.LatestBuild(ctx, "ABC"+"1"); err != nil {
		t.Errorf("upper-case prefix: %v", err)
	}
	b, err := s.LatestBuild(ctx, "abc2")
	if err != nil || b.ID != 3 {
		t.Errorf("LatestBuild(abc2) = %d, %v; want the newest, id 3", b.ID, err)
	}
	bs, err := s.ListBuilds(ctx, BuildFilter{Limit: 2})
	if err != nil || len(bs) != 2 || bs[0].ID != 3 {
		t.Errorf("ListBuilds = %d builds, %v; want 2, newest first", len(bs), err)
	}
	if _, err := s.GetBuild(ctx, 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBuild(42) = %v, want ErrNotFound", err)
	}
	if err := s.UpdateBuild(ctx, &Build{ID: 42, State: BuildFailed}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateBuild(42) = %v, want ErrNotFound", err)
	}
}

func TestEvents(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), FileName))
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))
	in := []Event{
		{Time: at, Kind: EventBuild, Commit: "aaaa1111", Digest: "sha256:1", Trigger: "cli", Outcome: OutcomeSucceeded},
		{Time: at, Kind: EventDeploy, Commit: "aaaa1111", Env: "dev", Outcome: OutcomeSucceeded},
		{Time: at, Kind: EventRelease, Commit: "aaaa1111", Env: "prod", Release: "RC20260301_1100", Outcome: OutcomeRefused, Message: "not verified on dev"},
	}
	for _, e := range in {
		if _, err := s.AddEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Events(ctx, EventFilter{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{ID: 3, Time: at.UTC(), Kind: EventRelease, Commit: "aaaa1111", Env: "prod", Release: "RC20260301_1100", Outcome: OutcomeRefused, Message: "not verified on dev"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prod events (-want +got):\n%s", diff)
	}
	all, _ := s.Events(ctx, EventFilter{Commit: "AAAA"})
	if len(all) != 3 || all[0].ID != 3 {
		t.Errorf("events of commit = %d, want 3 newest first", len(all))
	}
	page, _ := s.Events(ctx, EventFilter{Before: 3, Limit: 1})
	if len(page) != 1 || page[0].ID != 2 {
		t.Errorf("paging = %+v, want event 2", page)
	}
}

// TestConcurrentWriters checks that two stores on one file (two slipway
// processes) can write at once: WAL and the busy timeout serialise them.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	a, b := openTest(t, path), openTest(t, path)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := s.AddEvent(ctx, Event{Kind: EventBuild}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	es, err := a.Events(ctx, EventFilter{Limit: 1000})
	if err != nil || len(es) != 100 {
		t.Errorf("events = %d, %v; want 100", len(es), err)
	}
}
