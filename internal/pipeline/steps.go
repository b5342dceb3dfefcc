package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// step is one named step of a flow. Its name is recorded in the
// deployment's Step before it runs.
type step struct {
	name string
	run  func(ctx context.Context) error
}

// runSteps runs steps in order, recording each step's name in d. A step
// that fails transiently is tried again with backoff; the first terminal
// error (or one that outlasts the retries) ends the flow and is returned
// with its step in d.Step.
func (c *Controller) runSteps(ctx context.Context, ro *rollout, d *ledger.Deployment, steps []step) error {
	for _, s := range steps {
		if d.Step != s.name {
			d.Step = s.name
			if err := c.save(ctx, ro, d); err != nil {
				return err
			}
		}
		if err := c.retry(ctx, ro, s.name, s.run); err != nil {
			return err
		}
	}
	return nil
}

// retry runs fn until it succeeds, fails terminally, ctx ends, or it has
// failed transiently for longer than the retry budget. While it waits, the
// rollout says why in status.
func (c *Controller) retry(ctx context.Context, ro *rollout, what string, fn func(context.Context) error) error {
	backoff := c.cfg.RetryBackoff
	deadline := c.now().Add(c.cfg.RetryFor)
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !IsTransient(err) || ctx.Err() != nil || !c.now().Before(deadline) {
			if ro != nil {
				ro.setProblem("")
			}
			if err != nil && IsTransient(err) && attempt > 1 {
				return fmt.Errorf("%w (still failing after %d attempts)", err, attempt)
			}
			return err
		}
		if ro != nil {
			ro.setProblem(fmt.Sprintf("%s: attempt %d failed, trying again in %s: %v", what, attempt, backoff, err))
		}
		c.log.Warn("step failed, trying again", "step", what, "attempt", attempt, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// save writes d to the ledger. A write that fails is never dropped: the
// rollout waits, saying so in status, and tries again until it succeeds or
// ctx ends (then the row stays as last written and the next start takes it
// up again). The only error returned is ctx's.
func (c *Controller) save(ctx context.Context, ro *rollout, d *ledger.Deployment) error {
	return c.ledgerWrite(ctx, ro, d, func(ctx context.Context) error { return c.deps.Store.Update(ctx, d) })
}

// create records a new deployment, with save's persistence.
func (c *Controller) create(ctx context.Context, ro *rollout, d *ledger.Deployment) error {
	return c.ledgerWrite(ctx, ro, d, func(ctx context.Context) error { return c.deps.Store.Create(ctx, d) })
}

func (c *Controller) ledgerWrite(ctx context.Context, ro *rollout, d *ledger.Deployment, write func(context.Context) error) error {
	backoff := c.cfg.RetryBackoff
	for {
		err := write(context.WithoutCancel(ctx))
		if err == nil {
			if ro != nil {
				ro.set(*d)
				ro.setProblem("")
			}
			return nil
		}
		msg := fmt.Sprintf("ledger write failed, the rollout waits for it (step %s): %v", d.Step, err)
		if ro != nil {
			ro.setProblem(msg)
		}
		c.log.Error("record deployment", "env", d.Env, "deployment", d.ID, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", msg, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// finish records d's final state. When ctx has ended (shutdown), d stays in
// flight in the ledger and the next start takes it up.
func (c *Controller) finish(ctx context.Context, ro *rollout, log *slog.Logger, d *ledger.Deployment) {
	if ctx.Err() != nil {
		log.Info("interrupted by shutdown; taken up again at the next start", "step", d.Step)
		return
	}
	if err := c.save(ctx, ro, d); err != nil {
		return
	}
	switch d.State {
	case ledger.StateSucceeded:
		log.Info("done", "kind", d.Kind, "step", d.Step, "digest", d.Digest)
	default:
		log.Warn(string(d.State), "kind", d.Kind, "step", d.Step, "reason", d.Reason)
	}
}
