package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/notify"
)

// RollbackRequest asks to put an environment back on an earlier version.
type RollbackRequest struct {
	// Env is the environment; empty means the final one.
	Env string
	// Target is an RC name or a commit; empty means the release (or, on
	// an automatic environment, the version) that ran before the current
	// one.
	Target  string
	Trigger string
	// Force rolls back to a version the schema check says can no longer
	// run (docs/migrations.md); Reason is then required and recorded.
	Force  bool
	Reason string
}

// Rollback points an environment back at an earlier version and starts its
// rollout. Locks and freeze windows never stop a rollback. A rollback of
// an automatic environment pins it on that version (holds.go).
func (c *Controller) Rollback(ctx context.Context, req RollbackRequest) (ledger.Deployment, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Deployment{}, err
	}
	if req.Env == "" {
		req.Env = c.final.Name
	}
	e, err := c.env("rollback", req.Env)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if req.Trigger == "" {
		req.Trigger = "rollback command"
	}
	if req.Force && strings.TrimSpace(req.Reason) == "" {
		return ledger.Deployment{}, fmt.Errorf("rollback --force: say why with --reason: %w", ErrReasonRequired)
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
	crashpoint.Hit("rollback.recorded")
	ro.set(*d)
	out := *d
	c.goRun(ro, func(ctx context.Context) {
		c.promote(ctx, ro, d, cur, false)
		c.unpinFailed(ctx, e, d)
	})
	return out, nil
}

// unpinFailed removes the pin of a rollback d of an automatic environment
// that did not succeed: the environment is back on what it ran.
func (c *Controller) unpinFailed(ctx context.Context, e *Env, d *ledger.Deployment) {
	if !e.Automatic || d.State == ledger.StateSucceeded || ctx.Err() != nil {
		return
	}
	if p, ok := c.pinOf(e.Name); !ok || p.DeploymentID != d.ID {
		return
	}
	if err := c.dropPin(ctx, e, fmt.Sprintf("rollback %d did not succeed", d.ID)); err != nil {
		c.log.Warn("release the pin of a failed rollback", "env", e.Name, "err", err)
	}
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
	var to ledger.Deployment
	if e.Automatic {
		to, err = c.automaticTarget(ctx, e, cur, req.Target)
	} else {
		to, err = c.rollbackTarget(ctx, e, cur, req.Target)
	}
	if err != nil {
		return nil, cur, err
	}
	d := &ledger.Deployment{
		Env: e.Name, Kind: ledger.KindRollback, Trigger: req.Trigger, Commit: to.Commit,
		Image: to.Image, Digest: to.Digest, ReleaseName: to.ReleaseName, Replicas: cur.Replicas,
		PreviousID: cur.ID, State: ledger.StatePending, Step: "tags", Schema: to.Schema,
		Note: c.movedTagNote(ctx, e, req.Target, to),
	}
	began := c.now()
	problem, err := c.rollbackSchema(ctx, e, to)
	if err != nil {
		return nil, cur, err
	}
	if problem != "" && !req.Force {
		return nil, cur, c.refuseRollback(ctx, d, began, to, problem)
	}
	if problem != "" {
		d.Forced, d.ForceReason = true, strings.TrimSpace(req.Reason)
		d.Note = joinNote(d.Note, "schema check overridden: "+problem)
	}
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return nil, cur, err
	}
	if problem != "" {
		c.recordDone(ctx, d, "schema", began, ledger.StepSkipped, "overridden by --force: "+problem)
		c.schemaOverridden(ctx, d, problem)
	}
	if e.Automatic {
		if err := c.pin(ctx, e, d, cur, req.Trigger); err != nil {
			d.State, d.Reason = ledger.StateFailed, "not rolled back: "+err.Error()
			if uerr := c.deps.Store.Update(ctx, d); uerr != nil {
				return nil, cur, errors.Join(err, uerr)
			}
			return nil, cur, err
		}
	}
	return d, cur, nil
}

// automaticTarget is the version an automatic environment goes back to:
// target (a commit it ran before), or the newest version it ran other
// than cur's.
func (c *Controller) automaticTarget(ctx context.Context, e *Env, cur ledger.Deployment, target string) (ledger.Deployment, error) {
	if target == "" {
		rows, err := c.deps.Store.Latest(ctx, e.Name, 1000)
		if err != nil {
			return ledger.Deployment{}, err
		}
		for _, r := range rows {
			if r.State == ledger.StateSucceeded && r.Commit != cur.Commit && r.Digest != "" && r.Kind != ledger.KindStop {
				return r, nil
			}
		}
		return ledger.Deployment{}, fmt.Errorf("rollback: %s has run no other version than %s: %w", e.Name, shortHash(cur.Commit), ErrNothingReleased)
	}
	full, err := c.deps.Repo.Resolve(ctx, target)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if full == cur.Commit {
		return ledger.Deployment{}, fmt.Errorf("rollback to %s: %s already runs it: %w", target, e.Name, ErrAlreadyLive)
	}
	to, err := c.deps.Store.LatestForCommit(ctx, e.Name, ledger.KindDeploy, full)
	if errors.Is(err, ledger.ErrNoDeployment) || (err == nil && to.State != ledger.StateSucceeded) {
		return ledger.Deployment{}, fmt.Errorf("rollback to %s: it was never verified on %s (slipway history --env %s lists what ran there): %w", target, e.Name, e.Name, ErrNotReleased)
	}
	if err != nil {
		return ledger.Deployment{}, err
	}
	return to, nil
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

// refuseRollback records the rollback d to target as refused by the
// schema check and returns the refusal.
func (c *Controller) refuseRollback(ctx context.Context, d *ledger.Deployment, began time.Time, target ledger.Deployment, problem string) error {
	d.State, d.Reason = ledger.StateRefused, problem
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return err
	}
	c.recordDone(ctx, d, "schema", began, ledger.StepFailed, problem)
	re := &RefusedError{Env: d.Env, Commit: d.Commit, Reason: problem, Err: ErrSchema, Rollback: named(target)}
	c.log.Warn("rollback refused", "env", d.Env, "to", named(target), "deployment", d.ID, "problem", problem)
	ev := deploymentEvent(notify.Refused, d)
	ev.Message = fmt.Sprintf("%s: the rollback of %s to %s was refused: %s", c.cfg.App, d.Env, named(target), problem)
	c.Notify(ctx, ev)
	return re
}
