package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// replicaState is what a test reads of a replica.
type replicaState struct {
	state, message string
	restarts, pid  int
}

// testReplica is a replica whose process runs the shell script held by
// script, supervised with clk; state reads it.
func testReplica(t *testing.T, clk *fakeClock, script *atomic.Value) (r *replica, state func() replicaState) {
	var mu sync.Mutex
	host := &replicaHost{
		clock:  clk,
		logger: slog.New(slog.DiscardHandler),
		probe:  &http.Client{Timeout: time.Second},
		command: func(r *replica, out io.Writer) (*exec.Cmd, error) {
			cmd := exec.Command("/bin/sh", "-c", script.Load().(string))
			cmd.Stdout, cmd.Stderr = out, out
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			return cmd, nil
		},
		update: func(f func() bool) {
			mu.Lock()
			defer mu.Unlock()
			f()
		},
	}
	rev := &revision{id: "abcdef0", spec: deploy.Spec{Environment: "test", ReadinessPath: "/readyz",
		Strategy: deploy.Strategy{TerminationGracePeriod: time.Second}}}
	lb := newBalancer("test", clk, func(string, error) {})
	r = &replica{name: "test-abcde-1", rev: rev, addr: "127.0.0.1:1", host: host, done: make(chan struct{}),
		logPath: filepath.Join(t.TempDir(), "test-abcde-1.log"), state: "starting", created: clk.Now(),
		backend: lb.add("test-abcde-1", "127.0.0.1:1", "")}
	return r, func() replicaState {
		mu.Lock()
		defer mu.Unlock()
		return replicaState{r.state, r.message, r.restarts, r.pid}
	}
}

// nextBackoff waits until the replica's supervision asks the clock for a
// wait other than a readiness check's (a restart delay, a grace period),
// and returns it.
func nextBackoff(t *testing.T, clk *fakeClock) time.Duration {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case d := <-clk.asked:
			if d < minBackoff {
				continue // a readiness check
			}
			return d
		case <-timeout:
			t.Fatal("the replica's supervision waited for nothing but readiness checks for 10s")
		}
	}
}

func TestReplicaRestartBackoffAndCrashLoop(t *testing.T) {
	t.Parallel()
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
		wantState := replicaState{state: "restarting", message: "exited: exit status 3", restarts: i + 1}
		if i+1 >= crashLoopAfter {
			wantState.state = "crash-looping"
			wantState.message = fmt.Sprintf("exited %d times in a row within 10s of starting (last: exit status 3)", i+1)
		}
		if got := state(); got != wantState {
			t.Fatalf("after exit %d: %+v, want %+v", i+1, got, wantState)
		}
		if i < len(want)-1 {
			clk.Advance(d)
		}
	}

	// An exit after a stable run starts the count again.
	script.Store("exec sleep 60")
	clk.Advance(want[len(want)-1])
	deadline := time.Now().Add(10 * time.Second)
	for state().pid == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replica was not started again within 10s")
		}
		time.Sleep(time.Millisecond) // a real process starting
	}
	clk.Advance(stableAfter)
	syscall.Kill(-state().pid, syscall.SIGKILL)
	if d := nextBackoff(t, clk); d != minBackoff {
		t.Fatalf("restart after a stable run after %s, want %s", d, minBackoff)
	}
	wantState := replicaState{state: "restarting", message: "exited: signal: killed", restarts: len(want) + 1}
	if got := state(); got != wantState {
		t.Fatalf("after a stable run: %+v, want %+v", got, wantState)
	}

	r.stop()
	<-r.done
	if got := state(); got.state != "stopped" {
		t.Fatalf("after stop: %+v, want state stopped", got)
	}
}

func TestReplicaStopSendsSIGTERMThenSIGKILL(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	clk.asked = make(chan time.Duration, 1000)
	var script atomic.Value
	// The shell ignores SIGTERM and so does its child, which keeps the
	// process group alive.
	script.Store("trap '' TERM; sleep 60 & echo started; wait")
	r, state := testReplica(t, clk, &script)
	ctx, cancel := context.WithCancel(t.Context())
	r.stop = cancel
	go r.run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for state().pid == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replica was not started within 10s")
		}
		time.Sleep(time.Millisecond) // a real process starting
	}
	for {
		if b, _ := os.ReadFile(r.logPath); strings.Contains(string(b), "started") {
			break // SIGTERM is ignored from here on
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica did not say it started within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	pid := state().pid
	r.stop()
	// terminate waits for the grace period on the clock: until it has
	// passed, the process group is alive.
	if d := nextBackoff(t, clk); d != r.rev.spec.Strategy.TerminationGracePeriod {
		t.Fatalf("stop waits %s, want the grace period %s", d, r.rev.spec.Strategy.TerminationGracePeriod)
	}
	if err := syscall.Kill(-pid, 0); err != nil {
		t.Fatalf("process group gone before the grace period: %v", err)
	}
	select {
	case <-r.done:
		t.Fatal("stopped before the grace period passed")
	default:
	}
	// Only SIGKILL ends a shell that ignores SIGTERM.
	clk.Advance(r.rev.spec.Strategy.TerminationGracePeriod)
	<-r.done
	if got := state(); got.state != "stopped" || got.pid != 0 {
		t.Fatalf("after stop: %+v, want state stopped and no pid", got)
	}
}

func TestRestartDelay(t *testing.T) {
	for quick, want := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 5: 1600 * time.Millisecond,
		9: 25600 * time.Millisecond, 10: 30 * time.Second, 40: 30 * time.Second,
	} {
		if got := restartDelay(quick); got != want {
			t.Errorf("restartDelay(%d) = %s, want %s", quick, got, want)
		}
	}
}
