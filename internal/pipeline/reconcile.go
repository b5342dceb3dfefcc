package pipeline

import (
	"context"
	"errors"
	"fmt"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// reconcile takes up the deployments that were in flight when the controller
// last stopped: an automatic deployment is checked again from the start; a
// release, rollback, scale, stop or start is finished, or undone when it
// cannot be. Then every environment whose runtime does not run what the
// ledger says is given its spec again: the ledger is the one record of
// what should run.
func (c *Controller) reconcile(ctx context.Context) error {
	rows, err := c.deps.Store.InFlight(ctx)
	if err != nil {
		return fmt.Errorf("read deployments in flight: %w", err)
	}
	for i := range rows {
		d := &rows[i]
		log := c.log.With("env", d.Env, "commit", shortHash(d.Commit), "deployment", d.ID, "kind", d.Kind)
		c.closeInterrupted(ctx, d)
		e, ok := c.envs[d.Env]
		if !ok {
			d.State, d.Reason = ledger.StateFailed, "interrupted by a restart; the environment is no longer configured"
			if err := c.deps.Store.Update(ctx, d); err != nil {
				return err
			}
			continue
		}
		if d.Kind == ledger.KindDeploy {
			d.State = ledger.StateFailed
			d.Reason = fmt.Sprintf("interrupted by a restart at step %s; %s is checked again", d.Step, shortHash(d.Commit))
			d.Note = noteCheckedAgain
			if err := c.deps.Store.Update(ctx, d); err != nil {
				return err
			}
			if q := c.queues[e.Name]; q != nil {
				log.Info("in flight at restart: checked again")
				q.push(d.Commit)
			}
			continue
		}
		var prev ledger.Deployment
		if d.PreviousID != 0 {
			prev, err = c.deps.Store.Get(ctx, d.PreviousID)
			if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
				return err
			}
		}
		ro, err := c.rollouts.tryStart(*d)
		if err != nil {
			return fmt.Errorf("deployment %d: %w", d.ID, err)
		}
		log.Info("in flight at restart: finishing it")
		c.goRun(ro, func(ctx context.Context) {
			switch d.Kind {
			case ledger.KindScale, ledger.KindStop, ledger.KindStart:
				c.rollOutSame(ctx, ro, d, true)
			default:
				c.promote(ctx, ro, d, prev, true)
			}
		})
	}
	return c.restoreRuntime(ctx)
}

// restoreRuntime hands the runtime the spec of every environment it does
// not run as the ledger says: nothing deployed (its processes are gone, or
// the runtime's state was lost), or stopped when it should run, or running
// when it should be stopped.
func (c *Controller) restoreRuntime(ctx context.Context) error {
	for _, e := range c.cfg.Envs {
		cur, err := c.deps.Store.Current(ctx, e.Name)
		if errors.Is(err, ledger.ErrNoDeployment) {
			continue
		}
		if err != nil {
			return err
		}
		st, err := c.deps.Deployer.Status(ctx, e.Name)
		switch {
		case errors.Is(err, deploy.ErrNotDeployed):
		case err != nil:
			c.log.Warn("read the runtime's status", "env", e.Name, "err", err)
			continue
		case (cur.Kind == ledger.KindStop) == st.Stopped && (st.Stopped || st.Replicas.Desired > 0):
			continue // runs as the ledger says
		}
		ro, err := c.rollouts.tryStart(cur)
		if err != nil {
			continue // a rollout taken up above applies a spec anyway
		}
		c.log.Info("the runtime does not run what the ledger says: applying it again", "env", e.Name, "commit", shortHash(cur.Commit), "kind", cur.Kind)
		c.goRun(ro, func(ctx context.Context) {
			err := c.retry(ctx, ro, "restore "+cur.Env, func(ctx context.Context) error { return c.deps.Deployer.Deploy(ctx, cur) })
			if err != nil && ctx.Err() == nil {
				c.log.Error("apply the ledger's deployment again", "env", cur.Env, "err", err)
			}
		})
	}
	return nil
}
