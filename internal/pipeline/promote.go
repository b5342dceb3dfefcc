package pipeline

import (
	"context"
	"fmt"
	"strings"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// promote takes a release or rollback row through its steps: tags, branch,
// deploy, health; and undoes them when one fails. restarted says the row
// was in flight when the controller started, and notes that.
func (c *Controller) promote(ctx context.Context, ro *rollout, d *ledger.Deployment, prev ledger.Deployment, restarted bool) {
	e := c.envs[d.Env]
	log := c.log.With("env", e.Name, "commit", shortHash(d.Commit), "release", d.ReleaseName, "deployment", d.ID)
	var rolledOut bool
	err := c.runSteps(ctx, ro, d, append(c.releaseSteps(e, d, prev), []step{
		{"tags", func(ctx context.Context) error {
			if d.Kind == ledger.KindRelease && d.ReleaseName != "" {
				crashpoint.Hit("promote.tags")
				if err := c.deps.Tagger.Tag(ctx, d.Digest, d.ReleaseName); err != nil {
					return err
				}
				crashpoint.Hit("promote.tag.release")
				msg := fmt.Sprintf("%s: release of %s to %s", d.ReleaseName, shortHash(d.Commit), e.Name)
				if d.Forced {
					msg += " (forced: " + d.ForceReason + ")"
				}
				if err := c.deps.Repo.TagRelease(ctx, d.ReleaseName, d.Commit, msg); err != nil {
					return err
				}
				crashpoint.Hit("promote.git.tag")
			}
			if err := c.tagEnv(ctx, e, d.Digest); err != nil {
				return err
			}
			if err := c.pointBranch(ctx, e, d.Commit); err != nil {
				return err
			}
			crashpoint.Hit("promote.branch")
			d.State = ledger.StateRolling
			return nil
		}},
		{"deploy", func(ctx context.Context) error {
			log.Info("roll out", "digest", d.Digest, "replicas", d.Replicas)
			crashpoint.Hit("promote.rollout")
			if err := c.deps.Deployer.Deploy(ctx, *d); err != nil {
				return err
			}
			crashpoint.Hit("promote.rolledout")
			rolledOut = true
			return nil
		}},
		{"health", func(ctx context.Context) error { return c.waitHealthy(ctx, e.Name, d.Replicas) }},
	}...))
	if ctx.Err() != nil {
		c.finish(ctx, ro, log, d)
		return
	}
	switch {
	case err == nil:
		d.State, d.Step = ledger.StateSucceeded, "live"
		if restarted {
			d.Note = joinNote(d.Note, "finished after restart")
		}
	case d.Step == "release":
		// Nothing moved: no tag, no branch, no replica.
		d.State, d.Reason = ledger.StateFailed, releasePhaseReason(e.Name, err)
	case d.Step == "tags":
		d.State, d.Reason = ledger.StateFailed, c.trackUndo(ctx, ro, d, prev, false, fmt.Sprintf("tagging failed: %v", err))
	default:
		d.State = ledger.StateFailed
		if prev.ID != 0 {
			d.State = ledger.StateRolledBack
		}
		d.Reason = c.trackUndo(ctx, ro, d, prev, rolledOut, fmt.Sprintf("%s did not become healthy: %v", e.Name, err))
	}
	if err != nil && restarted {
		d.Note = joinNote(d.Note, "undone after restart")
	}
	c.finish(ctx, ro, log, d)
}

// pointBranch moves e's branch (a controlled environment's release branch)
// to commit.
func (c *Controller) pointBranch(ctx context.Context, e *Env, commit string) error {
	if e.Automatic || e.Branch == "" {
		return nil
	}
	head, err := c.deps.Repo.Head(ctx, e.Branch)
	if err != nil {
		return err
	}
	if head == commit {
		return nil
	}
	crashpoint.Hit("branch.move")
	return c.deps.Repo.MoveBranch(ctx, e.Branch, head, commit)
}

// trackUndo undoes d (undo), recorded as its step "undo", and returns the
// reason to record.
func (c *Controller) trackUndo(ctx context.Context, ro *rollout, d *ledger.Deployment, prev ledger.Deployment, redeploy bool, reason string) string {
	e := c.envs[d.Env]
	if prev.ID == 0 {
		return reason + "; there is no earlier release to go back to"
	}
	c.track(ctx, ro, d, "undo", func(ctx context.Context) error {
		var err error
		reason, err = c.undo(ctx, e, prev, redeploy, reason)
		if err == nil {
			deploy.ReportProgress(ctx, fmt.Sprintf("%s is back on %s", e.Name, describe(prev)))
		}
		return err
	})
	return reason
}

// undo puts e back on prev: its image (when the rollout went ahead), its
// tags and its branch. It returns the reason to record, and an error
// naming what could not be undone.
func (c *Controller) undo(ctx context.Context, e *Env, prev ledger.Deployment, redeploy bool, reason string) (string, error) {
	var problems []string
	try := func(what string, fn func(context.Context) error) {
		if err := c.retry(ctx, nil, what, fn); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", what, err))
		}
	}
	crashpoint.Hit("undo")
	if redeploy {
		try("redeploy", func(ctx context.Context) error { return c.deps.Deployer.Deploy(ctx, prev) })
	}
	try("move the tags back", func(ctx context.Context) error { return c.tagEnv(ctx, e, prev.Digest) })
	try("point "+e.Branch+" back", func(ctx context.Context) error { return c.pointBranch(ctx, e, prev.Commit) })
	what := describe(prev)
	msg := fmt.Sprintf("%s; rolled back to %s (%s)", reason, what, shortHash(prev.Commit))
	if len(problems) > 0 {
		msg += "; but: " + strings.Join(problems, "; ")
		return msg, fmt.Errorf("rolled back to %s (%s), but: %s", what, shortHash(prev.Commit), strings.Join(problems, "; "))
	}
	return msg, nil
}

// describe names a deployment for people: its release, else its number.
func describe(d ledger.Deployment) string {
	if d.ReleaseName != "" {
		return d.ReleaseName
	}
	return "deployment " + fmt.Sprint(d.ID)
}
