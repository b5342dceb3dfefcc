package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
)

func TestPushToMasterReachesDevVerified(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	d := h.pushMaster(c1)
	if d.State != ledger.StateSucceeded || d.Step != "verified" {
		t.Fatalf("dev deployment = %s at %s (%s), want succeeded at verified", d.State, d.Step, d.Reason)
	}
	if got, want := h.deployer.running("dev"), (running{digestOf(c1), 2}); got != want {
		t.Errorf("dev runs %+v, want %+v", got, want)
	}
	if _, ok := h.deployer.envs["prod"]; ok {
		t.Errorf("prod was deployed without a release")
	}
}

func TestFailuresLeaveDevOnLastGoodVersion(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	h.builder.fail[c2] = true
	h.smoker.fail[c3] = true
	h.start()
	h.pushMaster(c1)

	d := h.pushMaster(c2)
	if d.State != ledger.StateFailed || d.Step != "build" || !strings.Contains(d.Reason, "build failed") {
		t.Errorf("c2 on dev: %s at %s: %s; want failed at build", d.State, d.Step, d.Reason)
	}
	d = h.pushMaster(c3)
	if d.State != ledger.StateFailed || d.Step != "smoke" || !strings.Contains(d.Reason, "dev is back on "+c1[:7]) {
		t.Errorf("c3 on dev: %s at %s: %s; want failed at smoke, back on c1", d.State, d.Step, d.Reason)
	}
	if got := h.deployer.running("dev").digest; got != digestOf(c1) {
		t.Errorf("dev runs %s, want c1's image", got)
	}
	st, err := h.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dev := st.Environments[0]
	if *dev.Commit != c1 || dev.LastFailure == nil || !strings.Contains(*dev.LastFailure, "smoke test failed") {
		t.Errorf("status of dev: commit %s, last failure %v", *dev.Commit, dev.LastFailure)
	}
}

func TestNewestCommitWins(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	c4 := h.repo.commit("c4", c3)
	h.builder.gate = make(chan struct{})
	h.start()
	h.repo.setBranch("master", c1)
	h.c.Poll()
	h.waitFor("c1 to be in flight", func() bool { return h.c.queues["dev"].pending(c1) && h.c.busy("dev") })
	for _, c := range []string{c2, c3, c4} {
		h.repo.setBranch("master", c)
		h.waitFor(shortHash(c)+" to be queued", func() bool {
			q := h.c.queues["dev"]
			q.mu.Lock()
			defer q.mu.Unlock()
			return q.next == c
		})
	}
	close(h.builder.gate)
	h.waitFor("c4 verified", func() bool {
		v, err := h.store.Verified(context.Background(), "dev")
		return err == nil && v.Commit == c4
	})
	if diff := cmp.Diff([]string{c1, c4}, h.builder.builds); diff != "" {
		t.Errorf("built commits (-want +got):\n%s", diff)
	}
}

func TestReleaseTagsAndRollsOutTheVerifiedImage(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	h.pushMaster(c1)
	d := h.release("")
	if d.State != ledger.StateSucceeded {
		t.Fatalf("release: %s: %s", d.State, d.Reason)
	}
	if d.ReleaseName != "RC20261127_0930" || d.Commit != c1 || d.Digest != digestOf(c1) {
		t.Errorf("release = %s of %s with %s", d.ReleaseName, shortHash(d.Commit), d.Digest)
	}
	if diff := cmp.Diff([]string{c1}, h.builder.builds); diff != "" {
		t.Errorf("builds (the release must not rebuild) (-want +got):\n%s", diff)
	}
	checkTruth(t, h, c1, "RC20261127_0930")
	if got, want := h.deployer.running("prod"), (running{digestOf(c1), 4}); got != want {
		t.Errorf("prod runs %+v, want %+v", got, want)
	}

	// A second release in the same minute gets a suffix.
	c2 := h.repo.commit("c2", c1)
	h.pushMaster(c2)
	d = h.release(c2)
	if d.ReleaseName != "RC20261127_0930_2" {
		t.Errorf("second release in a minute named %s, want RC20261127_0930_2", d.ReleaseName)
	}
	checkTruth(t, h, c2, "RC20261127_0930_2")
}

// checkTruth checks that the ledger, the registry tags and git agree on what
// prod runs.
func checkTruth(t *testing.T, h *harness, commit, rc string) {
	t.Helper()
	st, err := h.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	prod := st.Environments[len(st.Environments)-1]
	if prod.Commit == nil || *prod.Commit != commit || prod.Release == nil || *prod.Release != rc {
		t.Errorf("status of prod: %v %v, want %s %s", prod.Commit, prod.Release, shortHash(commit), rc)
	}
	if got := h.tagger.get(LiveTag); got != digestOf(commit) {
		t.Errorf("live tag on %s, want %s", got, digestOf(commit))
	}
	if got := h.tagger.get(rc); got != digestOf(commit) {
		t.Errorf("%s tag on %s, want %s", rc, got, digestOf(commit))
	}
	if got := h.repo.branch("release"); got != commit {
		t.Errorf("release branch at %s, want %s", shortHash(got), shortHash(commit))
	}
	if got := h.repo.tags[rc]; got != commit {
		t.Errorf("git tag %s on %s, want %s", rc, shortHash(got), shortHash(commit))
	}
	if got := h.deployer.running("prod").digest; got != digestOf(commit) {
		t.Errorf("prod runs %s, want %s", got, digestOf(commit))
	}
}

func TestReleasePreflight(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	side := h.repo.commit("side", c1)
	c3 := h.repo.commit("c3", c2)
	c4 := h.repo.commit("c4", c3)
	h.smoker.fail[c3] = true
	envs := []Env{testEnvs[0], testEnvs[1]}
	envs[1].MinTimeVerified = 10 * time.Minute
	h.start(envs...)
	h.pushMaster(c1)
	h.clock.Add(time.Hour)
	if d := h.release(c1); d.State != ledger.StateSucceeded {
		t.Fatalf("first release: %s %s", d.State, d.Reason)
	}
	h.pushMaster(c3) // c2 is never deployed on its own
	h.pushMaster(c4)

	tests := []struct {
		name   string
		commit string
		want   error
		reason string
	}{
		{"not in master", side, ErrNotInSource, "not contained in master"},
		{"failed on dev", c3, ErrNotVerified, "failed on dev at step smoke"},
		{"never deployed on dev", c2, ErrNotVerified, "never deployed to dev"},
		{"too soon", c4, ErrTooSoon, "needs 10m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.c.Release(context.Background(), ReleaseRequest{Commit: tt.commit})
			var re *RefusedError
			if !errors.Is(err, tt.want) || !errors.As(err, &re) || !strings.Contains(re.Reason, tt.reason) {
				t.Fatalf("Release = %v, want %v with %q", err, tt.want, tt.reason)
			}
			checkTruth(t, h, c1, "RC20261127_1030")
			last, err := h.store.Latest(context.Background(), "prod", 1)
			if err != nil || last[0].State != ledger.StateRefused || last[0].Commit != tt.commit {
				t.Errorf("latest prod row = %+v, %v; want the refusal recorded", last, err)
			}
		})
	}

	// Not a fast-forward: prod on c4 (forced, recorded), then c2.
	h.clock.Add(time.Hour)
	if _, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c4, Force: true}); !errors.Is(err, ErrReasonRequired) {
		t.Errorf("force without reason: %v, want ErrReasonRequired", err)
	}
	d := h.release(c4)
	_, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c2})
	if !errors.Is(err, ErrNotFastForward) {
		t.Errorf("release of an ancestor: %v, want ErrNotFastForward", err)
	}
	checkTruth(t, h, c4, d.ReleaseName)

	fd, err := h.c.Release(context.Background(), ReleaseRequest{Commit: side, Force: true, Reason: "hotfix from a branch"})
	if err != nil {
		t.Fatal(err)
	}
	fd = h.waitFinal(fd.ID)
	if fd.State != ledger.StateSucceeded || !fd.Forced || fd.ForceReason != "hotfix from a branch" || !strings.Contains(fd.Note, "not a fast-forward") {
		t.Errorf("forced release = %+v", fd)
	}
	checkTruth(t, h, side, fd.ReleaseName)
}

func TestGitPushToRelease(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	h.smoker.fail[c3] = true
	h.repo.setBranch("release", c1) // the first release waits for dev
	h.start()
	h.pushMaster(c1)
	h.waitFor("c1 released by the branch", func() bool {
		d, err := h.store.Current(context.Background(), "prod")
		return err == nil && d.Commit == c1 && !h.c.busy("prod")
	})
	rel, _ := h.store.Current(context.Background(), "prod")
	if rel.Trigger != "git push to release" {
		t.Errorf("trigger = %q", rel.Trigger)
	}
	checkTruth(t, h, c1, rel.ReleaseName)

	// A fast-forward push of a verified commit is released.
	h.pushMaster(c2)
	h.repo.setBranch("release", c2)
	h.waitFor("c2 released", func() bool {
		d, err := h.store.Current(context.Background(), "prod")
		return err == nil && d.Commit == c2 && !h.c.busy("prod")
	})
	rel, _ = h.store.Current(context.Background(), "prod")

	// A push of a commit that failed on dev is refused and pointed back.
	h.pushMaster(c3)
	h.repo.setBranch("release", c3)
	h.waitFor("release pointed back", func() bool { return h.repo.branch("release") == c2 })
	last, _ := h.store.Latest(context.Background(), "prod", 1)
	if last[0].State != ledger.StateRefused || last[0].Commit != c3 {
		t.Errorf("latest prod row %+v, want c3 refused", last[0])
	}
	checkTruth(t, h, c2, rel.ReleaseName)

	// Once it passes on dev, the same commit pushed again is released.
	h.smoker.fail[c3] = false
	c4 := h.repo.commit("c4", c3)
	h.pushMaster(c4)
	h.repo.setBranch("release", c4)
	h.waitFor("c4 released", func() bool {
		d, err := h.store.Current(context.Background(), "prod")
		return err == nil && d.Commit == c4 && !h.c.busy("prod")
	})
	rel, _ = h.store.Current(context.Background(), "prod")
	checkTruth(t, h, c4, rel.ReleaseName)

	// A non-fast-forward push is refused and pointed back.
	h.repo.setBranch("release", c1)
	h.waitFor("release pointed back", func() bool { return h.repo.branch("release") == c4 })
	last, _ = h.store.Latest(context.Background(), "prod", 1)
	if last[0].State != ledger.StateRefused || !strings.Contains(last[0].Reason, "not a fast-forward") {
		t.Errorf("latest prod row %+v, want a non-fast-forward refusal", last[0])
	}
	checkTruth(t, h, c4, rel.ReleaseName)
}

func TestFailedReleaseRollsBackByItself(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	r1 := h.release(c1)
	h.pushMaster(c2)
	h.deployer.failing[digestOf(c2)] = true // ready on dev's check, not on prod's
	d := h.release(c2)
	if d.State != ledger.StateRolledBack || !strings.Contains(d.Reason, "rolled back to "+r1.ReleaseName) {
		t.Errorf("release = %s: %s; want rolled back to %s", d.State, d.Reason, r1.ReleaseName)
	}
	checkTruth(t, h, c1, r1.ReleaseName)
	st, _ := h.c.Status(context.Background())
	if lf := st.Environments[1].LastFailure; lf == nil || !strings.Contains(*lf, "did not become healthy") {
		t.Errorf("prod's last failure = %v", lf)
	}
}

func TestRollback(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	h.start()
	if _, err := h.c.Rollback(context.Background(), RollbackRequest{Target: ""}); !errors.Is(err, ErrNothingReleased) {
		t.Errorf("rollback before any release: %v", err)
	}
	var rels []ledger.Deployment
	for _, c := range []string{c1, c2, c3} {
		h.pushMaster(c)
		rels = append(rels, h.release(c))
		h.clock.Add(time.Minute)
	}
	if _, err := h.c.Scale(context.Background(), "prod", 6); err != nil {
		t.Fatal(err)
	}
	h.waitFor("scale", func() bool { return !h.c.busy("prod") })

	d, err := h.c.Rollback(context.Background(), RollbackRequest{Target: ""})
	if err != nil {
		t.Fatal(err)
	}
	d = h.waitFinal(d.ID)
	if d.State != ledger.StateSucceeded || d.Kind != ledger.KindRollback || d.ReleaseName != rels[1].ReleaseName || d.Replicas != 6 {
		t.Errorf("rollback = %+v", d)
	}
	checkTruth(t, h, c2, rels[1].ReleaseName)

	for _, target := range []string{rels[0].ReleaseName, c3} {
		want := rels[0]
		if target == c3 {
			want = rels[2]
		}
		d, err = h.c.Rollback(context.Background(), RollbackRequest{Target: target})
		if err != nil {
			t.Fatal(err)
		}
		h.waitFinal(d.ID)
		checkTruth(t, h, want.Commit, want.ReleaseName)
	}
	if _, err := h.c.Rollback(context.Background(), RollbackRequest{Target: "RC19990101_0000"}); !errors.Is(err, ErrNotReleased) {
		t.Errorf("rollback to an unknown release: %v", err)
	}
	if _, err := h.c.Rollback(context.Background(), RollbackRequest{Target: rels[2].ReleaseName}); !errors.Is(err, ErrAlreadyLive) {
		t.Errorf("rollback to the live release: %v", err)
	}
}

// A poll that read the release branch before a rollback moved it back, and
// looks at prod after the rollback ended, does not take what it read for a
// push: the rolled-back release is not released again.
func TestStaleReleaseBranchIsNotAPush(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	r1 := h.release(c1)
	h.pushMaster(c2)
	h.release(c2)
	d, err := h.c.Rollback(context.Background(), RollbackRequest{Target: r1.ReleaseName})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFinal(d.ID)
	if got := h.repo.branch("release"); got != c1 {
		t.Fatalf("release branch after the rollback: %s, want c1", shortHash(got))
	}
	read := func(branch string) (string, bool) {
		if branch == "release" {
			return c2, true // what a poll read before the rollback
		}
		return h.repo.branch(branch), true
	}
	if settled := h.c.checkReleaseBranch(context.Background(), h.c.envs["prod"], read); settled {
		t.Error("a poll with a stale read of the release branch reports it settled; want it to look again")
	}
	h.waitFor("prod idle", func() bool { return !h.c.busy("prod") })
	checkTruth(t, h, c1, r1.ReleaseName)
	if last, _ := h.store.Latest(context.Background(), "prod", 1); last[0].ID != d.ID {
		t.Errorf("after the stale read, prod's latest row is %s of %s (%s), want the rollback", last[0].Kind, shortHash(last[0].Commit), last[0].Trigger)
	}
}

func TestRestartFinishesRollout(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	h.release(c1)
	h.pushMaster(c2)

	h.deployer.gate = make(chan struct{}) // the prod rollout hangs
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c2})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("the rollout to start", func() bool {
		got, _ := h.store.Get(context.Background(), d.ID)
		return got.State == ledger.StateRolling && got.Step == "deploy"
	})
	h.stop()
	if got, _ := h.store.Get(context.Background(), d.ID); got.State != ledger.StateRolling {
		t.Fatalf("after stop: %s, want still rolling", got.State)
	}
	h.deployer.gate = nil
	h.start()
	got := h.waitFinal(d.ID)
	if got.State != ledger.StateSucceeded || got.Note != "finished after restart" {
		t.Errorf("after restart: %s (%s)", got.State, got.Note)
	}
	checkTruth(t, h, c2, d.ReleaseName)
}

func TestRestartUndoesFailingRollout(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	r1 := h.release(c1)
	h.pushMaster(c2)
	h.deployer.gate = make(chan struct{})
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c2})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("the rollout to start", func() bool {
		got, _ := h.store.Get(context.Background(), d.ID)
		return got.State == ledger.StateRolling
	})
	h.stop()
	h.deployer.gate = nil
	h.deployer.failing[digestOf(c2)] = true
	h.start()
	got := h.waitFinal(d.ID)
	if got.State != ledger.StateRolledBack || got.Note != "undone after restart" {
		t.Errorf("after restart: %s (%s): %s", got.State, got.Note, got.Reason)
	}
	checkTruth(t, h, c1, r1.ReleaseName)
}

func TestOneRolloutPerEnvironment(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	h.pushMaster(c1)
	h.deployer.gate = make(chan struct{})
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Scale(context.Background(), "prod", 2); !errors.Is(err, ErrBusy) {
		t.Errorf("scale during a release: %v, want ErrBusy", err)
	}
	if _, err := h.c.Rollback(context.Background(), RollbackRequest{Target: ""}); !errors.Is(err, ErrBusy) {
		t.Errorf("rollback during a release: %v, want ErrBusy", err)
	}
	close(h.deployer.gate)
	h.waitFinal(d.ID)
}

func TestUniqueName(t *testing.T) {
	tests := []struct {
		used []string
		want string
	}{
		{nil, "RC20261127_0930"},
		{[]string{"RC20261127_0930"}, "RC20261127_0930_2"},
		{[]string{"RC20261127_0930", "RC20261127_0930_2"}, "RC20261127_0930_3"},
		{[]string{"RC20261127_0930_2"}, "RC20261127_0930"},
	}
	for _, tt := range tests {
		if got := uniqueName("RC20261127_0930", tt.used); got != tt.want {
			t.Errorf("uniqueName(%v) = %s, want %s", tt.used, got, tt.want)
		}
	}
	loc := time.FixedZone("CET", 3600)
	if got := ReleaseName(time.Date(2026, 1, 2, 0, 5, 0, 0, loc)); got != "RC20260101_2305" {
		t.Errorf("ReleaseName in CET = %s, want the UTC name RC20260101_2305", got)
	}
}

func TestRestartChecksSourceDeployAgain(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.builder.gate = make(chan struct{}) // the build hangs
	h.start()
	h.repo.setBranch("master", c1)
	h.c.Poll()
	h.waitFor("the build to start", func() bool {
		d, err := h.store.LatestForCommit(context.Background(), "dev", ledger.KindDeploy, c1)
		return err == nil && d.Step == "build"
	})
	h.stop()
	h.builder.gate = nil
	h.start()
	h.waitFor("c1 verified", func() bool {
		v, err := h.store.Verified(context.Background(), "dev")
		return err == nil && v.Commit == c1
	})
	rows, err := h.store.Latest(context.Background(), "dev", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].State != ledger.StateFailed || rows[1].Note != "checked again after restart" || rows[0].State != ledger.StateSucceeded {
		t.Errorf("dev rows after a restart mid-build: %+v", rows)
	}
}

func TestMasterMovedBackIsDeployedAgain(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	h.pushMaster(c2)
	h.repo.setBranch("master", c1) // a force-push back
	h.waitFor("dev back on c1", func() bool {
		cur, err := h.store.Current(context.Background(), "dev")
		return err == nil && cur.Commit == c1
	})
	if got := h.deployer.running("dev").digest; got != digestOf(c1) {
		t.Errorf("dev runs %s, want c1's image", got)
	}
}
