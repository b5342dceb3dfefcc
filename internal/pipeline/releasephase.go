package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// This file is the release phase: a command an environment runs from the
// new image once per deployment (database migrations, most often), as the
// step "release", before anything moves: tags, branch and traffic stay on
// the running version until it has succeeded. Rollbacks and scale
// changes do not run it.

// ReleasePhaser runs environments' release phases.
type ReleasePhaser interface {
	// ReleasePhase runs d.Env's release command once, from d's image, in
	// d.Env's environment, writing its output to out; nil when it
	// succeeded. It changes nothing of what the environment serves.
	ReleasePhase(ctx context.Context, d ledger.Deployment, out io.Writer) error
}

// noteCheckedAgain is the note of an automatic deployment that a restart
// interrupted, whose commit is deployed again by a new deployment.
const noteCheckedAgain = "checked again after restart"

// ReleasePhaseError is a release phase that failed: Err says how, Output
// is the end of what the command wrote.
type ReleasePhaseError struct {
	Err    error
	Output string
}

func (e *ReleasePhaseError) Error() string {
	if e.Output == "" {
		return e.Err.Error() + " (no output)"
	}
	return e.Err.Error() + "; its output:\n" + e.Output
}

func (e *ReleasePhaseError) Unwrap() error { return e.Err }

// releaseSteps is the step "release" of d on e, first of d's steps, for an
// environment with a release phase that rolls out a new image; none for
// others. prev is what e runs now.
func (c *Controller) releaseSteps(e *Env, d *ledger.Deployment, prev ledger.Deployment) []step {
	if !e.ReleasePhase || c.deps.ReleasePhase == nil {
		return nil
	}
	switch d.Kind {
	case ledger.KindDeploy, ledger.KindRelease:
	default:
		return nil // a rollback returns to code that runs on the schema as it is
	}
	return []step{{"release", func(ctx context.Context) error { return c.releasePhase(ctx, e, d, prev) }}}
}

// releasePhase runs d's release phase, unless it succeeded already for d
// (or for the deployment of the same image a restart interrupted, which d
// takes up) and nothing ran on e since; it is recorded in the ledger
// before it starts and when it ends.
func (c *Controller) releasePhase(ctx context.Context, e *Env, d *ledger.Deployment, prev ledger.Deployment) error {
	if done, err := c.releasePhaseDone(ctx, e, d, prev); err != nil {
		return Transient(err)
	} else if done != 0 {
		deploy.ReportProgress(ctx, fmt.Sprintf("not run again: it succeeded for %s (deployment %d) before slipway restarted", shortHash(d.Commit), done))
		return nil
	}
	rec := c.deps.Store
	write := func(fn func(context.Context) error) error { return c.ledgerWrite(ctx, nil, d, fn) }
	run, err := c.releasePhaseRun(ctx, e, d, prev)
	if err != nil {
		return Transient(err)
	}
	if err := write(func(ctx context.Context) error { return rec.StartReleasePhase(ctx, d.ID, d.Digest) }); err != nil {
		return err
	}
	crashpoint.Hit("release.phase")
	deploy.ReportProgress(ctx, "running the release command from "+shortHash(d.Commit))
	out := &deploy.TailBuffer{}
	began := time.Now()
	err = c.deps.ReleasePhase.ReleasePhase(ctx, run, out)
	if err == nil {
		crashpoint.Hit("release.phased")
	}
	if ctx.Err() != nil {
		// Stopped with slipway: left running in the ledger, it runs
		// again when the deployment is taken up.
		return err
	}
	state := ledger.StepSucceeded
	if err != nil {
		state = ledger.StepFailed
	}
	if werr := write(func(ctx context.Context) error { return rec.FinishReleasePhase(ctx, d.ID, state) }); werr != nil {
		return werr
	}
	if err != nil {
		return &ReleasePhaseError{Err: err, Output: out.String()}
	}
	msg := fmt.Sprintf("succeeded in %s", time.Since(began).Round(time.Millisecond))
	if o := out.String(); o != "" {
		msg += "; its output:\n" + o
	}
	deploy.ReportProgress(ctx, msg)
	return nil
}

// releasePhaseDone returns the deployment whose release phase d need not
// run again, or 0: the newest release phase on e since prev is of d's
// image and succeeded, for d itself or for the deployment a restart
// interrupted that d repeats.
func (c *Controller) releasePhaseDone(ctx context.Context, e *Env, d *ledger.Deployment, prev ledger.Deployment) (int64, error) {
	last, err := c.deps.Store.LastReleasePhase(ctx, e.Name, prev.ID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case last.State != ledger.StepSucceeded || last.Digest != d.Digest:
		return 0, nil
	case last.DeploymentID == d.ID:
		return d.ID, nil
	}
	ran, err := c.deps.Store.Get(ctx, last.DeploymentID)
	if err != nil {
		return 0, err
	}
	if ran.Kind == ledger.KindDeploy && ran.Commit == d.Commit && strings.Contains(ran.Note, noteCheckedAgain) {
		return ran.ID, nil
	}
	return 0, nil
}

// releasePhaseRun is the run of d's release phase to hand the runtime: d,
// or, when a restart interrupted the automatic deployment of the same
// image that d repeats while its release phase ran, d under that
// deployment's number, so that a runtime that names its runs after it
// (the Kubernetes runtime's Job) takes up the run it left rather than
// starting the command a second time.
func (c *Controller) releasePhaseRun(ctx context.Context, e *Env, d *ledger.Deployment, prev ledger.Deployment) (ledger.Deployment, error) {
	run := *d
	if d.Kind != ledger.KindDeploy {
		return run, nil // a release taken up keeps its own number
	}
	last, err := c.deps.Store.LastReleasePhase(ctx, e.Name, prev.ID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return run, nil
	case err != nil:
		return run, err
	case last.State != ledger.StepRunning || last.Digest != d.Digest || last.DeploymentID == d.ID:
		return run, nil
	}
	ran, err := c.deps.Store.Get(ctx, last.DeploymentID)
	if err != nil {
		return run, err
	}
	if ran.Kind == ledger.KindDeploy && ran.Commit == d.Commit && strings.Contains(ran.Note, noteCheckedAgain) {
		run.ID = ran.ID
	}
	return run, nil
}

// releasePhaseReason is the reason recorded for a deployment whose release
// phase failed: the error without the command's output, which is the
// step's message.
func releasePhaseReason(env string, err error) string {
	var re *ReleasePhaseError
	if errors.As(err, &re) {
		err = re.Err
	}
	return fmt.Sprintf("release phase failed, nothing was rolled out and %s keeps its running version: %v", env, err)
}
