package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path"
	"strings"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
)

// Replica supervision: restart delays grow from minBackoff to maxBackoff
// while a replica keeps exiting within stableAfter of its start; after
// crashLoopAfter such exits it is reported as crash-looping.
const (
	minBackoff     = 100 * time.Millisecond
	maxBackoff     = 30 * time.Second
	stableAfter    = 10 * time.Second
	crashLoopAfter = 5
	// A new replica that exits this often before it was ever ready fails
	// the rollout at once.
	failRolloutAfter = 3
	livenessFailures = 3
	logCap           = 10 << 20
)

// Readiness is checked every firstCheck, then firstCheck more each time up
// to maxStartCheck, until the replica is first ready; every readyCheck from
// then on.
const (
	firstCheck    = 25 * time.Millisecond
	maxStartCheck = 200 * time.Millisecond
	readyCheck    = time.Second
)

// replica is one process of the app and its supervision.
type replica struct {
	name    string
	rev     *revision
	addr    string
	port    int
	logPath string
	created time.Time
	host    *replicaHost
	// backend is the replica in the load balancer, which owns it: whether
	// it is draining, its requests in flight, its connections.
	backend *backend

	// argv, when set, runs instead of the image's entrypoint and command:
	// a release command, run once by a replica that takes no traffic.
	argv []string

	// launch and cgroup are its sandbox's (nil without one), used by its
	// own supervision only.
	launch *sandboxLaunch
	cgroup *replicaCgroup

	// stop ends the replica's supervision; done is closed once its process
	// has stopped.
	stop context.CancelFunc
	done chan struct{}

	// Guarded by the supervisor's mu; the replica's own supervision
	// changes them through host.update.
	state      string
	ready      bool
	everReady  bool
	restarts   int
	quickExits int
	pid        int
	since      time.Time
	message    string
	lastExit   string
}

// replicaHost is what the supervision of replicas needs from the
// environment that owns them.
type replicaHost struct {
	clock  clock
	logger *slog.Logger
	probe  *http.Client
	// command builds a replica's process, writing its output to out.
	command func(r *replica, out io.Writer) (*exec.Cmd, error)
	// started, when set, runs once the process command built has
	// started: an error stops that process. It returns what explains how
	// the process ended, given the error it ended with.
	started func(r *replica, cmd *exec.Cmd) (explain func(error) error, err error)
	// finished, when set, runs when the replica's supervision ends.
	finished func(r *replica)
	// update changes replica states under the lock that guards them; f
	// reports whether the change must be announced (to the pool and to
	// rollouts waiting for it).
	update func(f func() (changed bool))
}

// run keeps r's process running until ctx ends, then stops it: SIGTERM to
// its process group, and SIGKILL after the termination grace period.
func (r *replica) run(ctx context.Context) {
	defer close(r.done)
	h := r.host
	lf, err := openLog(r.logPath, logCap)
	if err != nil {
		h.update(func() bool {
			r.state, r.message = "failed", err.Error()
			r.quickExits = failRolloutAfter
			return true
		})
		<-ctx.Done()
		return
	}
	defer lf.Close()
	if h.finished != nil {
		defer h.finished(r)
	}
	for {
		started := h.clock.Now()
		cmd, err := h.command(r, lf)
		if err == nil {
			err = cmd.Start()
		}
		explain := func(err error) error { return err }
		if err == nil && h.started != nil {
			if explain, err = h.started(r, cmd); err != nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				cmd.Wait()
			}
		}
		var exitErr error
		if err != nil {
			fmt.Fprintf(lf, "slipway: start replica: %v\n", err)
			exitErr = err
		} else {
			h.update(func() bool {
				r.pid, r.state, r.since, r.message = cmd.Process.Pid, "starting", h.clock.Wall(), ""
				return true
			})
			crashpoint.Hit("supervisor.replica.start")
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			checkCtx, stopChecks := context.WithCancel(ctx)
			go r.check(checkCtx, cmd.Process)
			select {
			case exitErr = <-exited:
				stopChecks()
				exitErr = explain(exitErr)
			case <-ctx.Done():
				stopChecks()
				r.terminate(cmd, r.rev.spec.Strategy.TerminationGracePeriod, exited)
				h.update(func() bool {
					r.state, r.ready, r.pid, r.since = "stopped", false, 0, h.clock.Wall()
					return true
				})
				return
			}
			if exitErr == nil {
				exitErr = errors.New("exit status 0")
			}
		}
		r.backend.conns.dropIdle()
		var delay time.Duration
		h.update(func() bool {
			r.ready, r.pid = false, 0
			r.restarts++
			if h.clock.Now().Sub(started) < stableAfter {
				r.quickExits++
			} else {
				r.quickExits = 1
			}
			r.lastExit = exitErr.Error()
			r.state, r.message = "restarting", "exited: "+r.lastExit
			if strings.HasPrefix(r.lastExit, "killed:") {
				r.message = r.lastExit
			}
			if r.quickExits >= crashLoopAfter {
				r.state = "crash-looping"
				r.message = fmt.Sprintf("exited %d times in a row within %s of starting (last: %s)", r.quickExits, stableAfter, r.lastExit)
			}
			r.since = h.clock.Wall()
			delay = restartDelay(r.quickExits)
			return true
		})
		h.logger.Warn("replica exited", "replica", r.name, "err", exitErr, "restart_in", delay)
		select {
		case <-h.clock.After(delay):
		case <-ctx.Done():
			h.update(func() bool {
				r.state, r.since = "stopped", h.clock.Wall()
				return true
			})
			return
		}
	}
}

// restartDelay is how long a replica waits before it is started again
// after quickExits exits in a row within stableAfter of starting: twice as
// long after each, up to maxBackoff.
func restartDelay(quickExits int) time.Duration {
	d := minBackoff
	for range quickExits - 1 {
		if d >= maxBackoff {
			break
		}
		d *= 2
	}
	return min(d, maxBackoff)
}

// terminate sends SIGTERM to the replica's process group, and SIGKILL after
// grace.
func (r *replica) terminate(cmd *exec.Cmd, grace time.Duration, exited <-chan error) {
	pid := cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
		syscall.Kill(-pid, syscall.SIGKILL) // what it left behind
	case <-r.host.clock.After(grace):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
}

// check probes r's readiness (quickly until it is first ready, then every
// second) and liveness until ctx ends. Failing liveness kills the process
// group, which run then restarts.
func (r *replica) check(ctx context.Context, proc *os.Process) {
	h := r.host
	spec := r.rev.spec
	readyURL := "http://" + r.addr + spec.ReadinessPath
	liveURL := ""
	if spec.LivenessPath != "" {
		liveURL = "http://" + r.addr + spec.LivenessPath
	}
	interval := firstCheck
	wasReady := false
	liveFails := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.clock.After(interval):
		}
		err := r.get(ctx, readyURL)
		if ctx.Err() != nil {
			return
		}
		h.update(func() bool {
			switch {
			case err == nil && !r.ready && !r.backend.draining.Load():
				r.ready, r.everReady, r.state, r.message, r.since = true, true, "ready", "", h.clock.Wall()
				return true
			case err != nil && (r.ready || (wasReady && r.state != "unready")):
				r.ready, r.state, r.message, r.since = false, "unready", "readiness check: "+err.Error(), h.clock.Wall()
				return true
			case err != nil && !wasReady:
				r.message = "readiness check: " + err.Error()
			}
			return false
		})
		if err == nil && !wasReady {
			crashpoint.Hit("supervisor.replica.ready")
		}
		if err == nil {
			wasReady = true
		}
		if wasReady {
			interval = readyCheck
		} else if interval < maxStartCheck {
			interval += firstCheck
		}
		if liveURL != "" && wasReady {
			if err := r.get(ctx, liveURL); err != nil {
				if ctx.Err() != nil {
					return
				}
				liveFails++
				if liveFails >= livenessFailures {
					h.logger.Warn("replica failed its liveness check; restarting it", "replica", r.name, "err", err)
					syscall.Kill(-proc.Pid, syscall.SIGKILL)
					return
				}
			} else {
				liveFails = 0
			}
		}
	}
}

// get asks url of the replica and reports an error unless it answers 2xx
// or 3xx.
func (r *replica) get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := r.host.probe.Do(req)
	if err != nil {
		if ue, ok := err.(*neturl.Error); ok && ue.Timeout() && ctx.Err() == nil {
			return fmt.Errorf("GET %s did not answer within %s, the time a check may take", path.Base(url), r.host.probe.Timeout)
		}
		return errors.Unwrap(err) // drop the URL: the replica is known
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s answered %s", path.Base(url), resp.Status)
	}
	return nil
}

// view is what the rollout planner sees of r; the host's lock is held.
func (r *replica) view() replicaView {
	return replicaView{
		name: r.name, revision: r.rev.id, ready: r.ready, everReady: r.everReady, quickExits: r.quickExits,
		created: r.created, draining: r.backend.draining.Load(), state: r.state, message: r.message, lastExit: r.lastExit,
	}
}
