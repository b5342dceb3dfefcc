package pipeline

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/freeze"
	"slipway.dev/slipway/internal/ledger"
)

// envStatus returns env's status.
func (h *harness) envStatus(env string) EnvStatus {
	h.t.Helper()
	st, err := h.c.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	for _, es := range st.Environments {
		if es.Name == env {
			return es
		}
	}
	h.t.Fatalf("no environment %s in status", env)
	return EnvStatus{}
}

// polled waits until the controller has fetched n more times: n polls
// have run.
func (h *harness) polled(n int64) {
	h.t.Helper()
	want := h.repo.fetches.Load() + n
	h.waitFor("polls", func() bool { return h.repo.fetches.Load() >= want })
}

// running commit of env, by its digest.
func (h *harness) runs(env, commit string) bool {
	return h.deployer.running(env).digest == digestOf(commit) && !h.c.busy(env)
}

func (h *harness) noted(kind string) bool {
	return slices.ContainsFunc(h.notes.all(), func(n string) bool { return strings.HasPrefix(n, kind+" ") })
}

func TestLockHoldsAutomaticDeploysUntilUnlocked(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	ctx := context.Background()
	if _, err := h.c.Lock(ctx, LockRequest{Env: "dev"}); !errors.Is(err, ErrReasonRequired) {
		t.Errorf("lock without a reason: %v, want ErrReasonRequired", err)
	}
	lk, err := h.c.Lock(ctx, LockRequest{Env: "dev", Reason: "database migration by hand", By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if lk.By != "alice" || lk.Since.IsZero() {
		t.Errorf("lock = %+v", lk)
	}
	if _, err := h.c.Lock(ctx, LockRequest{Env: "dev", Reason: "again"}); !errors.Is(err, ErrLocked) {
		t.Errorf("second lock: %v, want ErrLocked", err)
	}

	h.repo.setBranch("master", c2)
	h.waitFor("c2 to wait", func() bool {
		w := h.envStatus("dev").Waiting
		return w != nil && w.Commit == c2
	})
	h.polled(3)
	es := h.envStatus("dev")
	if es.Locked == nil || es.Locked.Reason != "database migration by hand" || !strings.Contains(es.Waiting.Reason, "dev is locked by alice") {
		t.Errorf("status of dev: locked %+v, waiting %+v", es.Locked, es.Waiting)
	}
	if _, err := h.store.LatestForCommit(ctx, "dev", ledger.KindDeploy, c2); !errors.Is(err, ledger.ErrNoDeployment) {
		t.Errorf("c2 was deployed to a locked dev: %v", err)
	}

	if _, err := h.c.Unlock(ctx, "dev", "bob"); err != nil {
		t.Fatal(err)
	}
	if d := h.waitVerified("dev", c2); d.State != ledger.StateSucceeded {
		t.Errorf("c2 after the unlock: %s: %s", d.State, d.Reason)
	}
	if es := h.envStatus("dev"); es.Locked != nil || es.Waiting != nil {
		t.Errorf("status after unlock: locked %+v, waiting %+v", es.Locked, es.Waiting)
	}
	held, hist, err := h.c.Locks(ctx, 10)
	if err != nil || len(held) != 0 || len(hist) != 1 || hist[0].UnlockedBy != "bob" || hist[0].By != "alice" || hist[0].Until.IsZero() {
		t.Errorf("locks after unlock: held %+v, history %+v, %v", held, hist, err)
	}
	if _, err := h.c.Unlock(ctx, "dev", ""); !errors.Is(err, ErrNotLocked) {
		t.Errorf("unlock of an unlocked dev: %v, want ErrNotLocked", err)
	}
	got := h.notes.all()
	if len(got) != 2 || !strings.HasPrefix(got[0], "locked dev: dev of  locked by alice") || !strings.HasPrefix(got[1], "unlocked dev: dev of  unlocked by bob") {
		t.Errorf("notifications = %q", got)
	}
}

func TestLockRefusesReleasesAndBreakGlassIsRecorded(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	h.pushMaster(c1)
	ctx := context.Background()
	if _, err := h.c.Lock(ctx, LockRequest{Env: "prod", Reason: "black friday", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	_, err := h.c.Release(ctx, ReleaseRequest{Commit: c1})
	var re *RefusedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &re) || !strings.Contains(re.Reason, "prod is locked by ops") || !strings.Contains(re.Reason, "--force --reason") {
		t.Fatalf("release to a locked prod: %v, want refused as locked", err)
	}
	rows, err := h.store.Latest(ctx, "prod", 1)
	if err != nil || len(rows) != 1 || rows[0].State != ledger.StateRefused || !strings.Contains(rows[0].Reason, "black friday") {
		t.Errorf("prod's history = %+v, %v; want the refusal", rows, err)
	}
	if _, ok := h.deployer.envs["prod"]; ok {
		t.Errorf("prod was deployed while locked")
	}

	d, err := h.c.Release(ctx, ReleaseRequest{Commit: c1, Force: true, Reason: "the fix for the checkout outage", Trigger: "release command"})
	if err != nil {
		t.Fatal(err)
	}
	d = h.waitFinal(d.ID)
	if d.State != ledger.StateSucceeded || !d.Forced || d.ForceReason != "the fix for the checkout outage" || !strings.Contains(d.Note, "break-glass: prod is locked by ops") {
		t.Errorf("break-glass release: %s forced %v %q, note %q", d.State, d.Forced, d.ForceReason, d.Note)
	}
	hist, err := h.c.History(ctx, "prod", 10)
	if err != nil || len(hist) != 2 || hist[0].ID != d.ID || !hist[0].Forced {
		t.Errorf("history of prod = %+v, %v; want the break-glass release on top", hist, err)
	}
	if !h.noted(EventBreakGlass) {
		t.Errorf("notifications = %q, want break_glass", h.notes.all())
	}
	if es := h.envStatus("prod"); es.Locked == nil {
		t.Errorf("prod is not locked any more after a break-glass release")
	}
}

func TestRollbackGoesOnWhileLocked(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	h.release(c1)
	h.clock.Add(time.Minute)
	h.pushMaster(c2)
	h.release(c2)
	ctx := context.Background()
	if _, err := h.c.Lock(ctx, LockRequest{Env: "prod", Reason: "incident 42"}); err != nil {
		t.Fatal(err)
	}
	d, err := h.c.Rollback(ctx, RollbackRequest{})
	if err != nil {
		t.Fatalf("rollback of a locked prod: %v", err)
	}
	if d = h.waitFinal(d.ID); d.State != ledger.StateSucceeded || d.Commit != c1 {
		t.Errorf("rollback: %s to %s: %s", d.State, shortHash(d.Commit), d.Reason)
	}
	if es := h.envStatus("prod"); es.Pinned != nil {
		t.Errorf("a controlled environment was pinned: %+v", es.Pinned)
	}
}

func TestFreezeWindow(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	// The clock starts on friday 2026-11-27 09:30 UTC.
	envs := slices.Clone(testEnvs)
	envs[0].Freeze = freeze.Schedule{{Name: "friday stand-up", Days: []time.Weekday{time.Friday}, From: 9 * 60, To: 10 * 60}}
	envs[1].Freeze = freeze.Schedule{{Start: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), End: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)}}
	h.start(envs...)

	h.repo.setBranch("master", c1)
	h.waitFor("c1 to wait for the freeze", func() bool {
		w := h.envStatus("dev").Waiting
		return w != nil && w.Commit == c1 && strings.Contains(w.Reason, "dev is frozen (friday stand-up) until 2026-11-27 10:00 UTC")
	})
	h.polled(3)
	if es := h.envStatus("dev"); es.Frozen == nil || es.Frozen.Window != "friday stand-up" || es.Commit != nil {
		t.Errorf("dev during its freeze: frozen %+v, commit %v", es.Frozen, es.Commit)
	}
	h.clock.Add(30 * time.Minute) // 10:00: the window ends
	if d := h.waitVerified("dev", c1); d.State != ledger.StateSucceeded {
		t.Errorf("c1 after the freeze: %s: %s", d.State, d.Reason)
	}
	h.release(c1) // 10:00, prod opens

	h.clock.Add(3 * time.Hour) // 13:00: prod is frozen for the weekend
	h.pushMaster(c2)
	_, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c2})
	if !errors.Is(err, ErrFrozen) || !strings.Contains(err.Error(), "prod is frozen (freeze 2026-11-27 12:00 to 2026-11-30 00:00 UTC) until 2026-11-30 00:00 UTC") {
		t.Errorf("release during a freeze: %v, want ErrFrozen", err)
	}
	h.clock.Add(3 * 24 * time.Hour)
	if d := h.release(c2); d.State != ledger.StateSucceeded {
		t.Errorf("release after the freeze: %s: %s", d.State, d.Reason)
	}
}

func TestRollbackPinsAnAutomaticEnvironment(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	h.start()
	h.pushMaster(c1)
	h.pushMaster(c2)
	ctx := context.Background()
	d, err := h.c.Rollback(ctx, RollbackRequest{Env: "dev", Trigger: "rollback command"})
	if err != nil {
		t.Fatal(err)
	}
	if d = h.waitFinal(d.ID); d.State != ledger.StateSucceeded || d.Commit != c1 || d.Kind != ledger.KindRollback {
		t.Fatalf("rollback of dev: %s %s to %s: %s", d.Kind, d.State, shortHash(d.Commit), d.Reason)
	}
	es := h.envStatus("dev")
	if es.Pinned == nil || es.Pinned.Commit != c1 || es.Pinned.From != c2 || es.Pinned.Head != c2 || es.Pinned.By != "rollback command" {
		t.Fatalf("dev's pin = %+v", es.Pinned)
	}
	h.polled(3)
	if !h.runs("dev", c1) {
		t.Errorf("dev runs %s after polls, want c1 (pinned)", h.deployer.running("dev").digest)
	}

	// The pin is in the ledger: a restart keeps it.
	h.stop()
	h.start()
	h.polled(3)
	if !h.runs("dev", c1) || h.envStatus("dev").Pinned == nil {
		t.Errorf("after a restart dev runs %s, pinned %v; want c1, pinned", h.deployer.running("dev").digest, h.envStatus("dev").Pinned)
	}

	// A new commit on master releases the pin.
	if d := h.pushMaster(c3); d.State != ledger.StateSucceeded {
		t.Fatalf("c3: %s: %s", d.State, d.Reason)
	}
	h.waitFor("dev on c3", func() bool { return h.runs("dev", c3) })
	if es := h.envStatus("dev"); es.Pinned != nil {
		t.Errorf("pin after a new commit: %+v", es.Pinned)
	}

	// Rolled back to c2 by name, then unpinned: dev takes master's head again.
	d, err = h.c.Rollback(ctx, RollbackRequest{Env: "dev", Target: c2})
	if err != nil {
		t.Fatal(err)
	}
	if d = h.waitFinal(d.ID); d.State != ledger.StateSucceeded || d.Commit != c2 {
		t.Fatalf("rollback of dev to c2: %s to %s: %s", d.State, shortHash(d.Commit), d.Reason)
	}
	h.polled(2)
	if !h.runs("dev", c2) {
		t.Fatalf("dev does not stay on c2")
	}
	if _, err := h.c.Unpin(ctx, "dev", "carol"); err != nil {
		t.Fatal(err)
	}
	h.waitFor("dev back on c3", func() bool { return h.runs("dev", c3) })
	if _, err := h.c.Unpin(ctx, "dev", ""); !errors.Is(err, ErrNotPinned) {
		t.Errorf("unpin of an unpinned dev: %v, want ErrNotPinned", err)
	}
}

// An environment fed by another keeps its pin while what it is fed from
// runs the version it was rolled back from.
func TestPinOfAnEnvironmentFedByAnother(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	h.start(chainEnvs...)
	h.pushMaster(c1)
	h.waitVerified("staging", c1)
	h.pushMaster(c2)
	h.waitVerified("staging", c2)
	d, err := h.c.Rollback(context.Background(), RollbackRequest{Env: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if d = h.waitFinal(d.ID); d.State != ledger.StateSucceeded || d.Commit != c1 {
		t.Fatalf("rollback of staging: %s to %s: %s", d.State, shortHash(d.Commit), d.Reason)
	}
	h.polled(3)
	if !h.runs("staging", c1) || !h.runs("dev", c2) {
		t.Errorf("staging runs %s, dev %s; want c1 (pinned) and c2", h.deployer.running("staging").digest, h.deployer.running("dev").digest)
	}
	h.pushMaster(c3)
	h.waitFor("staging on c3", func() bool { return h.runs("staging", c3) })
	if es := h.envStatus("staging"); es.Pinned != nil {
		t.Errorf("staging's pin after dev took c3: %+v", es.Pinned)
	}
}

// A git push of a locked environment's release branch is refused like a
// release, and the branch is pointed back.
func TestGitPushToALockedReleaseBranch(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	h.release(c1)
	h.pushMaster(c2)
	if _, err := h.c.Lock(context.Background(), LockRequest{Env: "prod", Reason: "audit"}); err != nil {
		t.Fatal(err)
	}
	h.repo.setBranch("release", c2)
	h.waitFor("release pointed back", func() bool { return h.repo.branch("release") == c1 })
	// The refusal's check ends just after the branch is pointed back.
	h.waitFor("the refusal's check to end", func() bool { return !h.c.busy("prod") })
	last, err := h.store.Latest(context.Background(), "prod", 1)
	if err != nil || last[0].State != ledger.StateRefused || last[0].Commit != c2 || !strings.Contains(last[0].Reason, "prod is locked by lock command") {
		t.Errorf("latest prod row %+v, %v; want c2 refused as locked", last, err)
	}
	if !h.runs("prod", c1) {
		t.Errorf("prod does not run c1 any more")
	}
}
