package pipeline

import (
	"context"
	"fmt"
	"sync"

	"slipway.dev/slipway/internal/ledger"
)

// rollouts owns which rollout runs in which environment: at most one per
// environment. Its lock guards only its map, never I/O, so a snapshot for
// status never waits for a rollout's step.
type rollouts struct {
	mu sync.Mutex
	m  map[string]*rollout
}

// rollout is one environment's rollout in flight. Only its owner (the
// goroutine that started it) changes the deployment; others read snapshots.
type rollout struct {
	r       *rollouts
	env     string
	snap    ledger.Deployment
	problem string // why the rollout waits (a retry, a ledger write), or ""
	check   bool   // a short look (the release branch's), not a rollout yet
	done    chan struct{}
}

func newRollouts() *rollouts { return &rollouts{m: map[string]*rollout{}} }

// tryStart marks d as its environment's rollout, or returns an ErrBusy error
// naming the rollout in flight.
func (r *rollouts) tryStart(d ledger.Deployment) (*rollout, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.m[d.Env]; ok {
		return nil, busyError(cur.snap)
	}
	ro := &rollout{r: r, env: d.Env, snap: d, done: make(chan struct{})}
	r.m[d.Env] = ro
	return ro, nil
}

// tryCheck is tryStart for a short look at the environment that may turn
// into a rollout; commands wait for it instead of failing (see claim).
func (r *rollouts) tryCheck(d ledger.Deployment) (*rollout, error) {
	ro, err := r.tryStart(d)
	if err == nil {
		r.mu.Lock()
		ro.check = true
		r.mu.Unlock()
	}
	return ro, err
}

// claim is tryStart for a command: it waits while the environment is only
// being looked at (tryCheck), and fails with ErrBusy while a rollout or
// another command holds it.
func (r *rollouts) claim(ctx context.Context, d ledger.Deployment) (*rollout, error) {
	return r.wait(ctx, d, false)
}

// start waits until d's environment has no rollout in flight, then marks d
// as its rollout.
func (r *rollouts) start(ctx context.Context, d ledger.Deployment) (*rollout, error) {
	return r.wait(ctx, d, true)
}

// wait marks d as its environment's rollout once the environment is free,
// waiting for what holds it: anything when always is set, else only a
// check.
func (r *rollouts) wait(ctx context.Context, d ledger.Deployment, always bool) (*rollout, error) {
	for {
		ro, err := r.tryStart(d)
		if err == nil {
			return ro, nil
		}
		r.mu.Lock()
		cur, ok := r.m[d.Env]
		waitable := ok && (always || cur.check)
		r.mu.Unlock()
		if ok && !waitable {
			return nil, err
		}
		if ok {
			select {
			case <-cur.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
}

func busyError(d ledger.Deployment) error {
	what := fmt.Sprintf("%s of %s", d.Kind, shortHash(d.Commit))
	if d.ID != 0 {
		what += fmt.Sprintf(" (deployment %d)", d.ID)
	}
	return fmt.Errorf("%s on %s is in flight: wait for it (slipway status): %w", what, d.Env, ErrBusy)
}

// set records d as the rollout's current state, for snapshots; a check
// that records a deployment has become a rollout.
func (ro *rollout) set(d ledger.Deployment) {
	ro.r.mu.Lock()
	ro.snap = d
	if d.ID != 0 {
		ro.check = false
	}
	ro.r.mu.Unlock()
}

// setProblem says why the rollout waits; "" clears it.
func (ro *rollout) setProblem(msg string) {
	ro.r.mu.Lock()
	ro.problem = msg
	ro.r.mu.Unlock()
}

// end frees the environment.
func (ro *rollout) end() {
	ro.r.mu.Lock()
	if ro.r.m[ro.env] == ro {
		delete(ro.r.m, ro.env)
		close(ro.done)
	}
	ro.r.mu.Unlock()
}

// snapshot returns env's rollout in flight and what it waits for.
func (r *rollouts) snapshot(env string) (ledger.Deployment, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro, ok := r.m[env]
	if !ok {
		return ledger.Deployment{}, "", false
	}
	return ro.snap, ro.problem, true
}
