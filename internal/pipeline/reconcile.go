package pipeline

import (
	"context"
	"errors"
	"fmt"

	"slipway.dev/slipway/internal/ledger"
)

// reconcile takes up the deployments that were in flight when the controller
// last stopped: a source deployment is checked again from the start; a
// release, rollback or scale is finished, or undone when it cannot be.
func (c *Controller) reconcile(ctx context.Context) error {
	rows, err := c.deps.Store.InFlight(ctx)
	if err != nil {
		return fmt.Errorf("read deployments in flight: %w", err)
	}
	for i := range rows {
		d := &rows[i]
		log := c.log.With("env", d.Env, "commit", shortHash(d.Commit), "deployment", d.ID, "kind", d.Kind)
		st, ok := c.envs[d.Env]
		if !ok {
			d.State, d.Reason = ledger.StateFailed, "interrupted by a restart; the environment is no longer configured"
			if err := c.save(ctx, d); err != nil {
				return err
			}
			continue
		}
		switch {
		case d.Kind == ledger.KindDeploy:
			d.State = ledger.StateFailed
			d.Reason = fmt.Sprintf("interrupted by a restart at step %s; %s is checked again", d.Step, shortHash(d.Commit))
			d.Note = "checked again after restart"
			if err := c.save(ctx, d); err != nil {
				return err
			}
			log.Info("in flight at restart: checked again")
			c.enqueue(d.Commit)
		default:
			var prev ledger.Deployment
			if d.PreviousID != 0 {
				prev, err = c.deps.Store.Get(ctx, d.PreviousID)
				if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
					return err
				}
			}
			if err := st.acquire(ctx, d); err != nil {
				return err
			}
			log.Info("in flight at restart: finishing it")
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer st.releaseLock()
				if d.Kind == ledger.KindScale {
					c.scale(c.runCtx, d, true)
					return
				}
				c.promote(c.runCtx, d, prev, true)
			}()
		}
	}
	return c.redeployStopped(ctx)
}

// redeployStopped brings back environments that the ledger says run an
// image but the runtime has nothing deployed for (they were stopped, or
// the runtime's state was lost).
func (c *Controller) redeployStopped(ctx context.Context) error {
	for _, e := range c.cfg.Envs {
		st := c.envs[e.Name]
		if st.inFlight() != nil {
			continue
		}
		cur, err := c.deps.Store.Current(ctx, e.Name)
		if errors.Is(err, ledger.ErrNoDeployment) {
			continue
		}
		if err != nil {
			return err
		}
		h, err := c.deps.Deployer.Health(ctx, e.Name)
		if err != nil || h.Desired > 0 {
			continue
		}
		if err := st.acquire(ctx, &cur); err != nil {
			return err
		}
		c.log.Info("not running: deploying it again", "env", e.Name, "commit", shortHash(cur.Commit))
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer st.releaseLock()
			if err := c.deps.Deployer.Deploy(c.runCtx, cur); err != nil && c.runCtx.Err() == nil {
				c.log.Error("deploy again", "env", cur.Env, "err", err)
			}
		}()
	}
	return nil
}
