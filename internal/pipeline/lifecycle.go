package pipeline

import (
	"context"
	"errors"
	"fmt"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/ledger"
)

// This file is the flows that keep an environment's image and change how
// it runs: scale, stop and start.

// Scale changes the replica count of env, keeping its image.
func (c *Controller) Scale(ctx context.Context, env string, replicas int) (ledger.Deployment, error) {
	if replicas < 1 {
		return ledger.Deployment{}, fmt.Errorf("scale %s=%d: at least 1 replica (slipway stop %s stops it): %w", env, replicas, env, ErrInvalid)
	}
	return c.change(ctx, "scale", env, ledger.KindScale, func(cur ledger.Deployment) (int, error) {
		if cur.Kind == ledger.KindStop {
			return 0, fmt.Errorf("scale %s: it is stopped; start it first (slipway start %s): %w", env, env, ErrStopped)
		}
		return replicas, nil
	})
}

// Stop stops env's replicas and keeps its front end answering that it is
// stopped; its image, data and place in the chain stay. Automatic
// deployments to it wait until it starts.
func (c *Controller) Stop(ctx context.Context, env string) (ledger.Deployment, error) {
	return c.change(ctx, "stop", env, ledger.KindStop, func(cur ledger.Deployment) (int, error) {
		if cur.Kind == ledger.KindStop {
			return 0, fmt.Errorf("stop %s: it is stopped already (since %s): %w", env, cur.FinishedAt.Format("2006-01-02 15:04 MST"), ErrStopped)
		}
		return 0, nil
	})
}

// Start brings a stopped env back with the image and replica count it had.
func (c *Controller) Start(ctx context.Context, env string) (ledger.Deployment, error) {
	return c.change(ctx, "start", env, ledger.KindStart, func(cur ledger.Deployment) (int, error) {
		if cur.Kind != ledger.KindStop {
			return 0, fmt.Errorf("start %s: it is not stopped: %w", env, ErrNotStopped)
		}
		before, err := c.deps.Store.Get(ctx, cur.PreviousID)
		if err != nil || before.Replicas < 1 {
			return c.envs[env].Replicas, nil
		}
		return before.Replicas, nil
	})
}

// change records a deployment of kind that keeps env's current image with
// the replica count replicas returns, and rolls it out in the background.
func (c *Controller) change(ctx context.Context, what, env string, kind ledger.DeploymentKind, replicas func(cur ledger.Deployment) (int, error)) (ledger.Deployment, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Deployment{}, err
	}
	if _, err := c.env(what, env); err != nil {
		return ledger.Deployment{}, err
	}
	ro, err := c.rollouts.claim(ctx, ledger.Deployment{Env: env, Kind: kind, State: ledger.StatePending, Step: "deploy"})
	if err != nil {
		return ledger.Deployment{}, err
	}
	cur, err := c.deps.Store.Current(ctx, env)
	if errors.Is(err, ledger.ErrNoDeployment) {
		ro.end()
		return ledger.Deployment{}, fmt.Errorf("%s %s: %w there yet", what, env, ErrNotDeployed)
	}
	if err != nil {
		ro.end()
		return ledger.Deployment{}, err
	}
	n, err := replicas(cur)
	if err != nil {
		ro.end()
		return ledger.Deployment{}, err
	}
	d := &ledger.Deployment{
		Env: env, Kind: kind, Trigger: what + " command", Commit: cur.Commit,
		Image: cur.Image, Digest: cur.Digest, ReleaseName: cur.ReleaseName, Replicas: n,
		PreviousID: cur.ID, State: ledger.StatePending, Step: "deploy", Schema: cur.Schema,
	}
	if err := c.deps.Store.Create(ctx, d); err != nil {
		ro.end()
		return ledger.Deployment{}, err
	}
	crashpoint.Hit("change.recorded")
	ro.set(*d)
	out := *d
	c.goRun(ro, func(ctx context.Context) { c.rollOutSame(ctx, ro, d, false) })
	return out, nil
}

// rollOutSame applies a scale, stop or start row and waits for it.
func (c *Controller) rollOutSame(ctx context.Context, ro *rollout, d *ledger.Deployment, restarted bool) {
	log := c.log.With("env", d.Env, "commit", shortHash(d.Commit), "deployment", d.ID, "kind", d.Kind)
	d.State = ledger.StateRolling
	steps := []step{{"deploy", func(ctx context.Context) error {
		crashpoint.Hit("change.rollout")
		return c.deps.Deployer.Deploy(ctx, *d)
	}}}
	if d.Replicas > 0 {
		steps = append(steps, step{"health", func(ctx context.Context) error { return c.waitHealthy(ctx, d.Env, d.Replicas) }})
	}
	err := c.runSteps(ctx, ro, d, steps)
	if ctx.Err() != nil {
		c.finish(ctx, ro, log, d)
		return
	}
	if err != nil {
		d.State, d.Reason = ledger.StateFailed, fmt.Sprintf("%s: %v", d.Kind, err)
	} else {
		d.State = ledger.StateSucceeded
	}
	if restarted {
		d.Note = joinNote(d.Note, "finished after restart")
	}
	c.finish(ctx, ro, log, d)
	if d.Kind == ledger.KindStart && d.State == ledger.StateSucceeded {
		// Commits that waited for the environment go now.
		if q := c.queues[d.Env]; q != nil {
			q.signal()
		}
		c.Poll()
	}
}
