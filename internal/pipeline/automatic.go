package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/notify"
)

// This file is the flow of automatic environments: noticing what they
// should take (a new head of their branch, a commit verified on the
// environment they are fed from) and taking it through build or image,
// deploy, health, smoke and tags to verified.

// poll fetches the repository and lets every environment react. When
// neither a branch nor the app's ledger rows moved since a poll that left
// nothing to look at again, the environments fed by another and the release
// branches are not looked at (their ledger queries are most of an idle
// controller's work), except once every fullPollEvery.
func (c *Controller) poll(ctx context.Context) {
	c.wakeWaiting() // a lock lifted, or a freeze window ended
	if err := c.deps.Repo.Fetch(ctx); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("fetch the app repository", "err", err)
		}
		return
	}
	heads := map[string]string{}
	head := func(branch string) (string, bool) {
		if h, ok := heads[branch]; ok {
			return h, true
		}
		h, err := c.deps.Repo.Head(ctx, branch)
		if err != nil {
			c.log.Warn("read branch", "branch", branch, "err", err)
			return "", false
		}
		heads[branch] = h
		return h, true
	}
	key, ok := c.pollKey(head)
	now := c.now()
	quiet := ok && key == c.settledKey && now.Sub(c.settledAt) < fullPollEvery
	settled := ok
	for i := range c.cfg.Envs {
		e := &c.cfg.Envs[i]
		switch {
		case e.Automatic && e.From == "":
			if h, ok := head(e.Branch); ok {
				c.considerHead(ctx, e, h)
			}
		case quiet:
		case e.Automatic:
			settled = c.considerUpstream(ctx, e) && settled
		default:
			settled = c.checkReleaseBranch(ctx, e, head) && settled
		}
	}
	switch {
	case quiet:
	case settled:
		c.settledKey, c.settledAt = key, now
	default:
		c.settledKey = ""
	}
}

// fullPollEvery bounds how long a quiet poll skips the ledger.
const fullPollEvery = 30 * time.Second

// pollKey describes what a poll reacts to: the head of every branch of the
// app and how many ledger writes the controller has made.
func (c *Controller) pollKey(head func(string) (string, bool)) (string, bool) {
	var b strings.Builder
	for _, e := range c.cfg.Envs {
		if e.Branch == "" {
			continue
		}
		h, ok := head(e.Branch)
		if !ok {
			return "", false
		}
		b.WriteString(e.Branch + "=" + h + " ")
	}
	b.WriteString(strconv.FormatUint(c.writes.Load(), 10))
	return b.String(), true
}

// considerHead queues a new head of e's branch, or a head that went back to
// a commit deployed before; a head seen before is left alone, and so is a
// commit that failed on e (it is not tried again until the branch moves).
func (c *Controller) considerHead(ctx context.Context, e *Env, head string) {
	pinned := c.keepPinned(ctx, e, head)
	c.mu.Lock()
	moved := head != "" && head != c.lastHead[e.Name]
	c.lastHead[e.Name] = head
	if c.announced[e.Name] == head {
		delete(c.announced, e.Name) // the repository confirms what the webhook said
	}
	c.mu.Unlock()
	if moved && !pinned {
		crashpoint.Hit("fetch.head")
		c.considerCommit(ctx, e, head)
	}
}

// considerUpstream queues the commit the environment e is fed from runs,
// once it has been verified there for e.MinTimeVerified. It reports false
// when a later poll must look again although nothing moved.
func (c *Controller) considerUpstream(ctx context.Context, e *Env) bool {
	up, err := c.deps.Store.Current(ctx, e.From)
	if errors.Is(err, ledger.ErrNoDeployment) {
		return true
	}
	if err != nil {
		c.log.Warn("read the ledger", "env", e.From, "err", err)
		return false
	}
	if c.keepPinned(ctx, e, up.Commit) {
		return true
	}
	if e.MinTimeVerified > 0 && c.since(c.sinceOf(ctx, up)) < e.MinTimeVerified {
		return false // the next poll looks again
	}
	return c.considerCommit(ctx, e, up.Commit)
}

// considerCommit queues commit for e unless e has dealt with it. It
// reports false when the ledger could not be read.
func (c *Controller) considerCommit(ctx context.Context, e *Env, commit string) bool {
	q := c.queues[e.Name]
	q.decide.Lock()
	defer q.decide.Unlock()
	if q.pending(commit) {
		return true
	}
	last, err := c.deps.Store.LatestForCommit(ctx, e.Name, ledger.KindDeploy, commit)
	switch {
	case errors.Is(err, ledger.ErrNoDeployment):
	case err != nil:
		c.log.Warn("read the ledger", "env", e.Name, "err", err)
		return false
	case last.State != ledger.StateSucceeded:
		return true // failed, or in flight: not again until something moves
	default:
		// Deployed before: again only if it is not what runs (the branch
		// went back to it).
		cur, err := c.deps.Store.Current(ctx, e.Name)
		if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
			return false
		}
		if err != nil || cur.Commit == commit {
			return true
		}
	}
	if old := q.push(commit); old != "" {
		c.log.Info("superseded before deploy", "env", e.Name, "commit", shortHash(old), "by", shortHash(commit))
	}
	return true
}

// worker deploys e's queued commits one at a time.
func (c *Controller) worker(ctx context.Context, e *Env, q *queue) {
	for {
		if commit := q.take(); commit != "" {
			reason, wait := c.admit(e, commit)
			switch {
			case reason != "" && !wait:
				c.log.Info("not deployed", "env", e.Name, "commit", shortHash(commit), "why", reason)
				q.finish()
			case reason != "" || c.stopped(ctx, e.Name):
				// A stopped, locked or frozen environment keeps its queue
				// until it opens again (the poll wakes this worker).
				q.putBack(commit)
			case c.deployAutomatic(ctx, e, commit):
				q.putBack(commit)
			default:
				q.finish()
				c.Poll() // environments fed by this one, and releases waiting for it
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
	}
}

// stopped reports whether env's current deployment stops it.
func (c *Controller) stopped(ctx context.Context, env string) bool {
	cur, err := c.deps.Store.Current(ctx, env)
	return err == nil && cur.Kind == ledger.KindStop
}

// deployAutomatic takes commit through e's steps. It reports true when
// the environment turned out to be held once its rollout was free: the
// commit waits.
func (c *Controller) deployAutomatic(ctx context.Context, e *Env, commit string) (wait bool) {
	first := "build"
	trigger := "push to " + e.Branch
	if e.From != "" {
		first, trigger = "image", "verified on "+e.From
	}
	d := &ledger.Deployment{Env: e.Name, Kind: ledger.KindDeploy, Trigger: trigger, Commit: commit,
		State: ledger.StatePending, Step: first}
	ro, err := c.rollouts.start(ctx, *d)
	if err != nil {
		return false
	}
	defer ro.end()
	// A rollback, a lock or a freeze may have come while the rollout
	// waited for the environment.
	if reason, wait := c.admit(e, commit); reason != "" {
		c.log.Info("not deployed now", "env", e.Name, "commit", shortHash(commit), "why", reason)
		return wait
	}
	prev, err := c.deps.Store.Current(ctx, e.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		c.log.Error("read the ledger", "env", e.Name, "err", err)
		return false
	}
	d.PreviousID, d.Replicas = prev.ID, e.Replicas
	if prev.ID != 0 && prev.Replicas > 0 {
		d.Replicas = prev.Replicas
	}
	d.Note = c.rewrittenNote(ctx, e, prev, commit)
	if err := c.create(ctx, ro, d); err != nil {
		return false
	}
	crashpoint.Hit("deploy.recorded")
	log := c.log.With("env", e.Name, "commit", shortHash(commit), "deployment", d.ID)
	log.Info(first)
	var rolledOut bool
	err = c.runSteps(ctx, ro, d, slices.Concat([]step{
		{first, func(ctx context.Context) error {
			img, err := c.imageFor(ctx, e, commit)
			if err != nil {
				return err
			}
			d.Image, d.Digest, d.State = img.Ref, img.Digest, ledger.StateRolling
			d.Schema = img.Schema
			d.Note = joinNote(d.Note, strandedNote(e.Name, prev, *d))
			crashpoint.Hit("deploy.image")
			return nil
		}},
	}, c.releaseSteps(e, d, prev), []step{
		{"deploy", func(ctx context.Context) error {
			log.Info("deploy", "digest", d.Digest, "replicas", d.Replicas)
			crashpoint.Hit("deploy.rollout")
			if err := c.deps.Deployer.Deploy(ctx, *d); err != nil {
				return err
			}
			crashpoint.Hit("deploy.rolledout")
			rolledOut = true
			return nil
		}},
		{"health", func(ctx context.Context) error {
			if err := c.waitHealthy(ctx, e.Name, d.Replicas); err != nil {
				return err
			}
			c.Notify(ctx, deploymentEvent(notify.Deployed, d))
			crashpoint.Hit("deploy.healthy")
			return nil
		}},
		{"smoke", func(ctx context.Context) error {
			crashpoint.Hit("deploy.smoke")
			return c.deps.Smoker.Smoke(ctx, e.Name, commit, e.URL)
		}},
		{"tags", func(ctx context.Context) error {
			crashpoint.Hit("deploy.tags")
			return c.tagEnv(ctx, e, d.Digest)
		}},
	}))
	if ctx.Err() != nil {
		c.finish(ctx, ro, log, d)
		return false
	}
	if err != nil {
		d.State, d.Reason = ledger.StateFailed, failReason(e.Name, d.Step, err)
		if rolledOut {
			d.Reason = c.restore(ctx, e, prev, d.Reason)
		}
	} else {
		d.State, d.Step = ledger.StateSucceeded, "verified"
	}
	c.finish(ctx, ro, log, d)
	return false
}

// imageFor is the image e deploys for commit: built for a branch-fed
// environment, the upstream's own image for one fed by an environment.
func (c *Controller) imageFor(ctx context.Context, e *Env, commit string) (Image, error) {
	if e.From == "" {
		return c.deps.Builder.Build(ctx, commit, c.announcedCheck(e, commit))
	}
	up, err := c.verifiedOn(ctx, c.envs[e.From], commit)
	if err != nil {
		return Image{}, err
	}
	crashpoint.Hit("chain.image")
	return Image{Ref: up.Image, Digest: up.Digest, Schema: up.Schema}, nil
}

// tagEnv points e's registry tag (and live, for the final environment) at
// digest.
func (c *Controller) tagEnv(ctx context.Context, e *Env, digest string) error {
	if err := c.deps.Tagger.Tag(ctx, digest, EnvTag(e.Name)); err != nil {
		return err
	}
	crashpoint.Hit("tag.env")
	if e == c.final {
		return c.deps.Tagger.Tag(ctx, digest, LiveTag)
	}
	return nil
}

func failReason(env, step string, err error) string {
	switch step {
	case "build":
		return fmt.Sprintf("build failed: %v", err)
	case "image":
		return fmt.Sprintf("no image to take: %v", err)
	case "deploy":
		return fmt.Sprintf("rollout failed, %s keeps its last good version: %v", env, err)
	case "health":
		return fmt.Sprintf("not healthy after the rollout: %v", err)
	case "smoke":
		return fmt.Sprintf("smoke test failed: %v", err)
	case "release":
		return releasePhaseReason(env, err)
	}
	return fmt.Sprintf("%s failed: %v", step, err)
}

// restore puts e back on prev after a failed check, and returns the reason
// to record.
func (c *Controller) restore(ctx context.Context, e *Env, prev ledger.Deployment, reason string) string {
	if ctx.Err() != nil {
		return reason
	}
	if prev.ID == 0 {
		return reason + "; there is no earlier version to go back to"
	}
	err := c.retry(ctx, nil, "redeploy "+shortHash(prev.Commit), func(ctx context.Context) error {
		return c.deps.Deployer.Deploy(ctx, prev)
	})
	if err != nil {
		return fmt.Sprintf("%s; going back to %s also failed: %v", reason, shortHash(prev.Commit), err)
	}
	return fmt.Sprintf("%s; %s is back on %s", reason, e.Name, shortHash(prev.Commit))
}
