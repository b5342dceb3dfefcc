package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// step is one named step of a flow. Its name is recorded in the
// deployment's Step before it runs.
type step struct {
	name string
	run  func(ctx context.Context) error
}

// runSteps runs steps in order, recording each step's name in d, and each
// step as a row of its own (ledger.Step) when it starts and when it ends,
// with the runtime's progress while it runs and the error when it fails.
// A step that fails transiently is tried again with backoff; the first
// terminal error (or one that outlasts the retries) ends the flow and is
// returned with its step in d.Step. Step rows follow the rule of every
// ledger write (ledgerWrite): a failed write is tried again until it
// succeeds, and the flow waits for it.
func (c *Controller) runSteps(ctx context.Context, ro *rollout, d *ledger.Deployment, steps []step) error {
	for _, s := range steps {
		if d.Step != s.name {
			d.Step = s.name
			if err := c.save(ctx, ro, d); err != nil {
				return err
			}
		}
		err := c.track(ctx, ro, d, s.name, func(ctx context.Context) error {
			return c.retry(ctx, ro, s.name, s.run)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// track records step name of d as it starts, runs fn, and records how it
// ended: failed with fn's error, or succeeded with the last progress
// reported. fn's context carries a progress report (deploy.WithProgress)
// that becomes the step's message. It returns fn's error, or ctx's when a
// record could not be written before ctx ended.
func (c *Controller) track(ctx context.Context, ro *rollout, d *ledger.Deployment, name string, fn func(context.Context) error) error {
	rec := &stepRecord{c: c, log: c.log.With("env", d.Env, "deployment", d.ID, "step", name)}
	err := c.ledgerWrite(ctx, ro, d, func(ctx context.Context) error {
		s, err := c.deps.Store.StartStep(ctx, d.ID, name)
		rec.s = s
		return err
	})
	if err != nil {
		return err
	}
	began := time.Now()
	rec.log.Info("step started")
	err = fn(deploy.WithProgress(ctx, rec.progress))
	fin := rec.finish(ctx, err)
	rec.log.Info("step ended", "state", fin.State, "took", time.Since(began).Round(time.Millisecond))
	if ferr := c.ledgerWrite(ctx, ro, d, func(ctx context.Context) error { return c.deps.Store.FinishStep(ctx, &fin) }); ferr != nil && err == nil {
		return ferr
	}
	return err
}

// stepRecord is a running step's row, which progress reports update.
type stepRecord struct {
	c   *Controller
	log *slog.Logger
	mu  sync.Mutex
	s   ledger.Step
	end bool // finished: progress reports are late
}

// progress writes msg as the running step's message. Progress is
// informational and frequent: a write that fails is logged and not tried
// again, as the next report or the step's end writes the message anyway.
func (r *stepRecord) progress(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.end || msg == r.s.Message {
		return
	}
	r.s.Message = msg
	r.log.Info("step progress", "progress", msg)
	s := r.s
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.c.deps.Store.UpdateStep(ctx, &s); err != nil {
		r.log.Warn("record the step's progress", "progress", msg, "err", err)
	}
}

// finish returns the step's row as it ended with err.
func (r *stepRecord) finish(ctx context.Context, err error) ledger.Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end = true
	s := r.s
	switch {
	case err == nil:
		s.State = ledger.StepSucceeded
	case ctx.Err() != nil:
		s.State, s.Message = ledger.StepFailed, interruptedStep
	default:
		s.State, s.Message = ledger.StepFailed, err.Error()
	}
	return s
}

// interruptedStep is the message of a step that slipway stopped in the
// middle of; the next start takes its deployment up again.
const interruptedStep = "interrupted: slipway stopped during this step"

// Steps returns the steps of one of the app's deployments, in the order
// they started: ErrNoDeployment for a deployment the ledger does not hold
// (for this app), an empty list for one without steps.
func (c *Controller) Steps(ctx context.Context, deploymentID int64) ([]ledger.Step, error) {
	if _, err := c.deps.Store.Get(ctx, deploymentID); err != nil {
		return nil, err
	}
	steps, err := c.deps.Store.Steps(ctx, deploymentID)
	if err != nil {
		return nil, err
	}
	if steps == nil {
		steps = []ledger.Step{}
	}
	return steps, nil
}

// recordDone records step name of d after the fact: it ran from began
// until now and ended as state says, with msg. A release's preflight runs
// before its row exists, and is recorded so. The row itself holds the
// step's outcome (refused, with its reason, or pending), so this record is
// informational: a write that fails is logged, and never fails the
// request.
func (c *Controller) recordDone(ctx context.Context, d *ledger.Deployment, name string, began time.Time, state, msg string) {
	s, err := c.deps.Store.StartStep(ctx, d.ID, name)
	if err == nil {
		s.Started, s.State, s.Message = began.UTC(), state, msg
		err = c.deps.Store.FinishStep(ctx, &s)
	}
	if err != nil {
		c.log.Warn("record a step", "env", d.Env, "deployment", d.ID, "step", name, "err", err)
	}
}

// closeInterrupted finishes the steps of d left running when the
// controller last stopped, as failed. A step row left running is only
// misleading, not wrong: a write that fails here is logged and the
// controller starts anyway.
func (c *Controller) closeInterrupted(ctx context.Context, d *ledger.Deployment) {
	steps, err := c.deps.Store.Steps(ctx, d.ID)
	if err != nil {
		c.log.Warn("read the steps of a deployment in flight at restart", "deployment", d.ID, "err", err)
		return
	}
	for _, s := range steps {
		if s.State != ledger.StepRunning {
			continue
		}
		s.State = ledger.StepFailed
		s.Message = joinNote(s.Message, interruptedStep)
		if err := c.deps.Store.FinishStep(ctx, &s); err != nil {
			c.log.Warn("finish a step interrupted by a restart", "deployment", d.ID, "step", s.Name, "err", err)
		}
	}
}

// notifyingStore calls onChange after every write that succeeded.
type notifyingStore struct {
	Store
	onChange func()
}

func (n notifyingStore) notify(err error) error {
	if err == nil {
		n.onChange()
	}
	return err
}

func (n notifyingStore) Create(ctx context.Context, d *ledger.Deployment) error {
	return n.notify(n.Store.Create(ctx, d))
}

func (n notifyingStore) Update(ctx context.Context, d *ledger.Deployment) error {
	return n.notify(n.Store.Update(ctx, d))
}

func (n notifyingStore) StartStep(ctx context.Context, id int64, name string) (ledger.Step, error) {
	s, err := n.Store.StartStep(ctx, id, name)
	return s, n.notify(err)
}

func (n notifyingStore) UpdateStep(ctx context.Context, s *ledger.Step) error {
	return n.notify(n.Store.UpdateStep(ctx, s))
}

func (n notifyingStore) FinishStep(ctx context.Context, s *ledger.Step) error {
	return n.notify(n.Store.FinishStep(ctx, s))
}

// retry runs fn until it succeeds, fails terminally, ctx ends, or it has
// failed transiently for longer than the retry budget; a step that failed
// because the ledger takes no writes is tried again until it does, with no
// budget, as every ledger write is. While it waits, the rollout says why
// in status.
func (c *Controller) retry(ctx context.Context, ro *rollout, what string, fn func(context.Context) error) error {
	backoff := c.cfg.RetryBackoff
	deadline := c.deps.Monotonic() + c.cfg.RetryFor
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		again := (IsTransient(err) && c.deps.Monotonic() < deadline) || waitsForLedger(err)
		if err == nil || !again || ctx.Err() != nil {
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
		deploy.ReportProgress(ctx, fmt.Sprintf("%s failed (attempt %d), trying again in %s: %v", what, attempt, backoff, err))
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
		err = ledger.Explain(err)
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
	c.notifyFinal(ctx, d)
	crashpoint.Hit("pipeline.final")
	if err := c.save(ctx, ro, d); err != nil {
		return
	}
	c.sight(d.FinishedAt)
	crashpoint.Hit("pipeline.finished")
	switch d.State {
	case ledger.StateSucceeded:
		log.Info("done", "kind", d.Kind, "step", d.Step, "digest", d.Digest)
	default:
		log.Warn(string(d.State), "kind", d.Kind, "step", d.Step, "reason", d.Reason)
	}
}
