package pipeline

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// TestClockJumpsDoNotReleaseEarly jumps the wall clock an hour ahead, and
// an hour back, right after a commit is verified on dev, with prod and
// staging requiring it verified for 10 minutes: the jump ahead releases
// nothing early (prod refuses, staging waits), the jump back holds nothing
// an hour longer; both go ahead after 10 real minutes.
func TestClockJumpsDoNotReleaseEarly(t *testing.T) {
	for _, jump := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(jump.String(), func(t *testing.T) {
			h := newHarness(t)
			c1 := h.repo.commit("c1")
			// staging takes what dev verified, prod releases it from dev:
			// both once it has been verified there for 10 minutes.
			envs := slices.Clone(chainEnvs)
			envs[1].MinTimeVerified = 10 * time.Minute
			envs[2].RequireVerifiedOn, envs[2].MinTimeVerified = "dev", 10*time.Minute
			h.start(envs...)
			if d := h.pushMaster(c1); d.State != ledger.StateSucceeded {
				t.Fatalf("dev: %s (%s)", d.State, d.Reason)
			}
			h.clock.Jump(jump)
			h.pollOnce()
			h.pollOnce()
			if _, err := h.store.LatestForCommit(context.Background(), "staging", ledger.KindDeploy, c1); err == nil {
				t.Fatalf("staging took c1 after the wall clock jumped %s, before it was verified on dev for 10 minutes", jump)
			}
			_, err := h.c.Release(context.Background(), ReleaseRequest{Env: envs[2].Name, Commit: c1})
			if !errors.Is(err, ErrTooSoon) {
				t.Fatalf("release right after the jump = %v, want it refused as too soon", err)
			}

			h.clock.Add(11 * time.Minute)
			h.pollOnce()
			if d := h.waitVerified("staging", c1); d.State != ledger.StateSucceeded {
				t.Fatalf("staging 11 minutes later: %s (%s)", d.State, d.Reason)
			}
			if d := h.release(c1); d.State != ledger.StateSucceeded {
				t.Fatalf("release 11 minutes after dev verified it: %s (%s)", d.State, d.Reason)
			}
		})
	}
}

// TestClockJumpMidRetry jumps the wall clock an hour ahead while a build
// step is being tried again after a transient failure: the step keeps its
// retry budget (measured on the monotonic clock) and succeeds, rather than
// giving up at once.
func TestClockJumpMidRetry(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.builder.transient = map[string]int{c1: 2}
	h.builder.gate = make(chan struct{})
	h.start()
	h.repo.setBranch("master", c1)
	h.c.Poll()
	attempt := func(n int) {
		t.Helper()
		select {
		case h.builder.gate <- struct{}{}:
		case <-time.After(10 * time.Second):
			d, _ := h.store.LatestForCommit(context.Background(), "dev", ledger.KindDeploy, c1)
			t.Fatalf("build attempt %d never came; dev's deployment: %s (%s)", n, d.State, d.Reason)
		}
	}
	attempt(1)
	h.clock.Jump(time.Hour)
	attempt(2)
	h.clock.Jump(-2 * time.Hour)
	attempt(3)
	d := h.pushMaster(c1)
	if d.State != ledger.StateSucceeded {
		t.Fatalf("dev: %s (%s), want the build to succeed at its third attempt", d.State, d.Reason)
	}
}
