package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"slipway.dev/slipway/internal/ledger"
)

// RollbackRequest asks to put a controlled environment back on an earlier
// release.
type RollbackRequest struct {
	// Env is the controlled environment; empty means the final one.
	Env string
	// Target is an RC name or a commit; empty means the release that ran
	// before the current one.
	Target  string
	Trigger string
}

// Rollback points a controlled environment back at an earlier release and
// starts its rollout.
func (c *Controller) Rollback(ctx context.Context, req RollbackRequest) (ledger.Deployment, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Deployment{}, err
	}
	e, err := c.controlled("rollback", req.Env)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if req.Trigger == "" {
		req.Trigger = "rollback command"
	}
	ro, err := c.rollouts.claim(ctx, ledger.Deployment{Env: e.Name, Kind: ledger.KindRollback, State: ledger.StatePending, Step: "tags"})
	if err != nil {
		return ledger.Deployment{}, err
	}
	d, cur, err := c.prepareRollback(ctx, e, req)
	if err != nil {
		ro.end()
		return ledger.Deployment{}, err
	}
	ro.set(*d)
	out := *d
	c.goRun(ro, func(ctx context.Context) { c.promote(ctx, ro, d, cur, false) })
	return out, nil
}

func (c *Controller) prepareRollback(ctx context.Context, e *Env, req RollbackRequest) (*ledger.Deployment, ledger.Deployment, error) {
	cur, err := c.deps.Store.Current(ctx, e.Name)
	if errors.Is(err, ledger.ErrNoDeployment) {
		return nil, cur, fmt.Errorf("rollback: %s has no release yet: %w", e.Name, ErrNothingReleased)
	}
	if err != nil {
		return nil, cur, err
	}
	if cur.Kind == ledger.KindStop {
		return nil, cur, fmt.Errorf("rollback of %s: it is stopped; start it first (slipway start %s): %w", e.Name, e.Name, ErrStopped)
	}
	to, err := c.rollbackTarget(ctx, e, cur, req.Target)
	if err != nil {
		return nil, cur, err
	}
	d := &ledger.Deployment{
		Env: e.Name, Kind: ledger.KindRollback, Trigger: req.Trigger, Commit: to.Commit,
		Image: to.Image, Digest: to.Digest, ReleaseName: to.ReleaseName, Replicas: cur.Replicas,
		PreviousID: cur.ID, State: ledger.StatePending, Step: "tags",
	}
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return nil, cur, err
	}
	return d, cur, nil
}

func (c *Controller) rollbackTarget(ctx context.Context, e *Env, cur ledger.Deployment, target string) (ledger.Deployment, error) {
	if target == "" {
		rels, err := c.deps.Store.Releases(ctx, e.Name, 1000)
		if err != nil {
			return ledger.Deployment{}, err
		}
		for _, r := range rels {
			if r.Commit != cur.Commit {
				return c.releaseOf(ctx, e, r), nil
			}
		}
		what := cur.ReleaseName
		if what == "" {
			what = shortHash(cur.Commit)
		}
		return ledger.Deployment{}, fmt.Errorf("rollback: %s has had no release before %s: %w", e.Name, what, ErrNothingReleased)
	}
	var to ledger.Deployment
	var err error
	if strings.HasPrefix(target, "RC") {
		to, err = c.deps.Store.ReleaseByName(ctx, e.Name, target)
	} else {
		var full string
		full, err = c.deps.Repo.Resolve(ctx, target)
		if err != nil {
			return ledger.Deployment{}, err
		}
		to, err = c.deps.Store.ReleaseByCommit(ctx, e.Name, full)
	}
	if errors.Is(err, ledger.ErrNoDeployment) {
		return ledger.Deployment{}, fmt.Errorf("rollback to %s: it was never released to %s (slipway history %s lists the releases): %w", target, e.Name, e.Name, ErrNotReleased)
	}
	if err != nil {
		return ledger.Deployment{}, err
	}
	if to.Commit == cur.Commit {
		return ledger.Deployment{}, fmt.Errorf("rollback to %s: %s already runs %s: %w", target, e.Name, shortHash(cur.Commit), ErrAlreadyLive)
	}
	return to, nil
}

// releaseOf returns the original release of a release or rollback row, so
// that a rollback carries the release's own name and image.
func (c *Controller) releaseOf(ctx context.Context, e *Env, r ledger.Deployment) ledger.Deployment {
	if r.Kind == ledger.KindRelease || r.ReleaseName == "" {
		return r
	}
	orig, err := c.deps.Store.ReleaseByName(ctx, e.Name, r.ReleaseName)
	if err != nil {
		return r
	}
	return orig
}
