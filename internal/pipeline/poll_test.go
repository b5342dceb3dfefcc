package pipeline

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// readCounter counts the ledger reads a poll makes.
type readCounter struct {
	Store
	reads atomic.Int64
}

func (r *readCounter) Current(ctx context.Context, env string) (ledger.Deployment, error) {
	r.reads.Add(1)
	return r.Store.Current(ctx, env)
}

func (r *readCounter) LatestForCommit(ctx context.Context, env string, kind ledger.DeploymentKind, commit string) (ledger.Deployment, error) {
	r.reads.Add(1)
	return r.Store.LatestForCommit(ctx, env, kind, commit)
}

// pollOnce wakes the poll loop and returns once that poll has ended.
func (h *harness) pollOnce() {
	h.t.Helper()
	for range 2 { // the second fetch starts after the first poll ended
		n := h.repo.fetches.Load()
		h.c.Poll()
		h.waitFor("a poll", func() bool { return h.repo.fetches.Load() > n })
	}
}

// settle polls until a poll reads nothing: the first polls after the last
// write (a flow may write after its row ended) read.
func (h *harness) settle(counter *readCounter) {
	h.t.Helper()
	for range 20 {
		before := counter.reads.Load()
		h.pollOnce()
		if counter.reads.Load() == before {
			return
		}
	}
	h.t.Fatal("every poll still reads the ledger after 20 polls")
}

// An idle controller does not read the ledger at every poll: only when a
// branch or a ledger row moved, when something is left to look at again (a
// commit not yet verified long enough), and every fullPollEvery.
func TestIdlePollSkipsTheLedger(t *testing.T) {
	h := newHarness(t)
	counter := &readCounter{Store: h.store}
	h.storeOverride = counter
	c1 := h.repo.commit("c1")
	envs := append([]Env(nil), chainEnvs...)
	h.start(envs...)
	h.pushMaster(c1)
	h.waitVerified("staging", c1)
	h.settle(counter)

	before := counter.reads.Load()
	for range 3 {
		h.pollOnce()
	}
	if got := counter.reads.Load() - before; got != 0 {
		t.Errorf("3 idle polls read the ledger %d times, want none", got)
	}

	// A release branch moved by git push is looked at on the next poll.
	h.repo.setBranch("release", c1)
	h.pollOnce()
	var rel ledger.Deployment
	h.waitFor("a release of c1", func() bool {
		l, err := h.store.Latest(context.Background(), "prod", 1)
		if err != nil || len(l) == 0 || !l[0].State.Final() {
			return false
		}
		rel = l[0]
		return true
	})
	if rel.State != ledger.StateSucceeded || rel.Commit != c1 {
		t.Fatalf("release by push: %s %s (%s)", rel.State, shortHash(rel.Commit), rel.Reason)
	}

	// Once in a while the poll reads whatever happened.
	h.settle(counter)
	before = counter.reads.Load()
	h.pollOnce()
	if got := counter.reads.Load() - before; got != 0 {
		t.Errorf("an idle poll after the release read the ledger %d times", got)
	}
	h.clock.Add(fullPollEvery + time.Second)
	h.pollOnce()
	if counter.reads.Load() == before {
		t.Errorf("no ledger read %s after the last one", fullPollEvery)
	}
}

// An environment waiting for a commit to be verified long enough upstream
// keeps looking at every poll until it takes it.
func TestPollLooksAgainWhileWaitingForMinTimeVerified(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	envs := append([]Env(nil), chainEnvs...)
	envs[1].MinTimeVerified = 10 * time.Minute
	h.start(envs...)
	h.pushMaster(c1)
	h.pollOnce()
	h.pollOnce()
	if _, err := h.store.LatestForCommit(context.Background(), "staging", ledger.KindDeploy, c1); err == nil {
		t.Fatal("staging took c1 before it was verified on dev for 10 minutes")
	}
	h.clock.Add(11 * time.Minute)
	h.pollOnce()
	if d := h.waitVerified("staging", c1); d.State != ledger.StateSucceeded {
		t.Fatalf("staging: %s (%s)", d.State, d.Reason)
	}
}
