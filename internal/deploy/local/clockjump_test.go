package local

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// The supervisors measure every duration on Now (the monotonic clock);
// these tests move the wall clock (Jump) an hour ahead and back in the
// middle of each wait and check that the wait ends as it does without a
// jump. test/crash's TestSupervisorClockJumps does the same with the real
// supervisors of slipway serve (EnvClockJump).

// TestCrashLoopUnderClockJumps: restart delays and crash-loop detection
// are the same with the wall clock jumping ±1 h between exits, and an exit
// right after a jump ahead still counts as quick.
func TestCrashLoopUnderClockJumps(t *testing.T) {
	clk := newFakeClock()
	clk.asked = make(chan time.Duration, 1000)
	var script atomic.Value
	script.Store("exit 3")
	r, state := testReplica(t, clk, &script)
	ctx, cancel := context.WithCancel(t.Context())
	r.stop = cancel
	go r.run(ctx)

	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond}
	for i, wantDelay := range want {
		d := nextBackoff(t, clk)
		if d != wantDelay {
			t.Fatalf("restart %d after %s, want %s", i+1, d, wantDelay)
		}
		if got := state(); (i+1 >= crashLoopAfter) != (got.state == "crash-looping") {
			t.Fatalf("after exit %d: %+v, want crash-looping from exit %d on", i+1, got, crashLoopAfter)
		}
		jump := time.Hour
		if i%2 == 1 {
			jump = -time.Hour
		}
		clk.Jump(jump)
		if i < len(want)-1 {
			clk.Advance(d)
		}
	}

	// Started again, it dies at once after the wall clock went an hour
	// ahead: a quick exit still, so the delay grows on.
	script.Store("exec sleep 60")
	clk.Advance(want[len(want)-1])
	deadline := time.Now().Add(10 * time.Second)
	for state().pid == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replica was not started again within 10s")
		}
		time.Sleep(time.Millisecond) // a real process starting
	}
	clk.Jump(2 * time.Hour)
	syscall.Kill(-state().pid, syscall.SIGKILL)
	if d := nextBackoff(t, clk); d != 2*want[len(want)-1] {
		t.Fatalf("restart after an exit right after a jump ahead after %s, want %s (a quick exit)", d, 2*want[len(want)-1])
	}
	if got := state(); got.state != "crash-looping" {
		t.Fatalf("after an exit right after a jump ahead: %+v, want crash-looping", got)
	}
	r.stop()
	<-r.done
}

// TestDrainUnderClockJumps: a draining replica with a request in flight
// is waited for its whole grace period, neither cut short by a jump ahead
// nor held an hour by a jump back; one whose request ends is let go at
// once.
func TestDrainUnderClockJumps(t *testing.T) {
	for _, jump := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(jump.String(), func(t *testing.T) {
			const grace = 100 * time.Millisecond
			clk := newFakeClock()
			lb := newBalancer("test", clk, func(string, error) {})
			be := lb.add("r1", "127.0.0.1:1", "")
			be.outstanding.Add(1)
			lb.drain(be)
			done := make(chan bool, 1)
			go func() { done <- lb.waitDrained(be, grace) }()
			waited := time.Duration(0)
			for waited < grace {
				if waited == grace/2 {
					clk.Jump(jump)
				}
				waitFor(t, func() bool {
					select {
					case ok := <-done:
						t.Fatalf("waitDrained returned %v %s into a grace period of %s, the wall clock moved %s", ok, waited, grace, jump)
					default:
					}
					return clk.Waiters() > 0
				})
				clk.Advance(drainPoll)
				waited += drainPoll
			}
			select {
			case ok := <-done:
				if ok {
					t.Fatal("waitDrained reported drained with a request in flight")
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("waitDrained still waits %s past its grace period of %s, the wall clock moved %s", waited-grace, grace, jump)
			}

			// The request ends after the jump: let go at once.
			be2 := lb.add("r2", "127.0.0.1:2", "")
			be2.outstanding.Add(1)
			lb.drain(be2)
			go func() { done <- lb.waitDrained(be2, time.Hour) }()
			waitFor(t, func() bool { return clk.Waiters() > 0 })
			clk.Jump(jump)
			be2.outstanding.Add(-1)
			clk.Advance(drainPoll)
			select {
			case ok := <-done:
				if !ok {
					t.Fatal("waitDrained did not report drained once the request ended")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("waitDrained still waits after the request ended")
			}
		})
	}
}

// TestReadyTimeoutUnderClockJumps: a replica starting is failed at its
// readiness timeout, not at once after a jump ahead, nor an hour late
// after a jump back.
func TestReadyTimeoutUnderClockJumps(t *testing.T) {
	st := deploy.Strategy{MaxSurge: 1, ReadyTimeout: time.Minute}
	for _, jump := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(jump.String(), func(t *testing.T) {
			clk := newFakeClock()
			starting := replicaView{name: "n1", revision: "new", created: clk.Now(), state: "starting"}
			old := replicaView{name: "o1", revision: "old", ready: true, everReady: true, created: clk.Now(), state: "ready"}
			clk.Advance(10 * time.Second)
			clk.Jump(jump)
			p := planRollout("new", 1, st, []replicaView{old, starting}, clk.Now())
			if p.fail != nil {
				t.Fatalf("10 s after its start, the wall clock moved %s: failed: %s", jump, p.fail.reason)
			}
			if wait := p.next.Sub(clk.Now()); wait <= 0 || wait > maxPlanWait {
				t.Fatalf("next look in %s, want within %s", wait, maxPlanWait)
			}
			clk.Advance(st.ReadyTimeout - 10*time.Second + time.Millisecond)
			p = planRollout("new", 1, st, []replicaView{old, starting}, clk.Now())
			if p.fail == nil || !strings.Contains(p.fail.reason, fmt.Sprintf("not ready within %s", st.ReadyTimeout)) {
				t.Fatalf("past its readiness timeout, the wall clock moved %s: %+v, want it failed", jump, p)
			}
		})
	}
}

// waitFor waits until cond holds, for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("gave up after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
