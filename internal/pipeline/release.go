package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/ledger"
)

// This file is the flow of controlled environments: the release branch
// moved by a plain git push, the release command, the preflight that
// guards both, and release names.

// ReleaseRequest asks for a release.
type ReleaseRequest struct {
	// Env is the controlled environment; empty means the final one.
	Env string
	// Commit is a revision; empty means the newest commit verified on the
	// environment the release requires.
	Commit string
	// Force skips the preflight; Reason is then required and recorded.
	Force   bool
	Reason  string
	Trigger string
}

// controlled returns the controlled environment name names (the final
// environment when name is empty).
func (c *Controller) controlled(what, name string) (*Env, error) {
	if name == "" {
		name = c.final.Name
	}
	e, err := c.env(what, name)
	if err != nil {
		return nil, err
	}
	if e.Automatic {
		var ctl []string
		for _, x := range c.cfg.Envs {
			if !x.Automatic {
				ctl = append(ctl, x.Name)
			}
		}
		if len(ctl) == 0 {
			return nil, fmt.Errorf("%s: every environment is automatic; add a controlled one (mode: controlled) to release to: %w", what, ErrNoControlledEnv)
		}
		return nil, fmt.Errorf("%s %s: it is automatic (it takes %s by itself); name a controlled environment with --env (%s): %w",
			what, e.Name, e.feed(), strings.Join(ctl, ", "), ErrNoControlledEnv)
	}
	return e, nil
}

// feed says in words where an environment's commits come from.
func (e *Env) feed() string {
	switch {
	case e.Automatic && e.From != "":
		return "every commit verified on " + e.From
	case e.Automatic:
		return "every push to " + e.Branch
	}
	return "releases of commits verified on " + e.RequireVerifiedOn
}

// Release checks and starts a release; it returns the deployment once it is
// recorded, and the rollout goes on in the background. A failed preflight is
// recorded and returned as a *RefusedError; the environment is untouched.
func (c *Controller) Release(ctx context.Context, req ReleaseRequest) (ledger.Deployment, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Deployment{}, err
	}
	e, err := c.controlled("release", req.Env)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if req.Force && strings.TrimSpace(req.Reason) == "" {
		return ledger.Deployment{}, fmt.Errorf("release --force: say why with --reason: %w", ErrReasonRequired)
	}
	if req.Trigger == "" {
		req.Trigger = "release command"
	}
	var commit string
	if req.Commit == "" {
		v, err := c.deps.Store.Current(ctx, e.RequireVerifiedOn)
		if errors.Is(err, ledger.ErrNoDeployment) {
			up := c.envs[e.RequireVerifiedOn]
			return ledger.Deployment{}, fmt.Errorf("release: no commit is verified on %s yet (it takes %s); wait for one, or name a commit: %w", up.Name, up.feed(), ErrNotVerified)
		}
		if err != nil {
			return ledger.Deployment{}, err
		}
		commit = v.Commit
	} else {
		full, err := c.deps.Repo.Resolve(ctx, req.Commit)
		if err != nil {
			return ledger.Deployment{}, err
		}
		commit = full
	}
	// Hold the environment for the preflight, which may have to build a
	// forced commit: nothing else may roll it out meanwhile.
	ro, err := c.rollouts.claim(ctx, ledger.Deployment{Env: e.Name, Kind: ledger.KindRelease, Commit: commit, State: ledger.StatePending, Step: "preflight"})
	if err != nil {
		return ledger.Deployment{}, err
	}
	cur, err := c.deps.Store.Current(ctx, e.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		ro.end()
		return ledger.Deployment{}, err
	}
	if cur.Kind == ledger.KindStop {
		ro.end()
		return ledger.Deployment{}, fmt.Errorf("release to %s: it is stopped; start it first (slipway start %s): %w", e.Name, e.Name, ErrStopped)
	}
	if cur.ID != 0 && cur.Commit == commit {
		ro.end()
		what := cur.ReleaseName
		if what == "" {
			what = "deployment " + fmt.Sprint(cur.ID)
		}
		return ledger.Deployment{}, fmt.Errorf("release %s: %s already runs it (%s): %w", shortHash(commit), e.Name, what, ErrAlreadyLive)
	}
	d, err := c.prepareRelease(ctx, ro, e, cur, commit, req.Trigger, req.Force, req.Reason)
	if err != nil {
		ro.end()
		return ledger.Deployment{}, err
	}
	out := *d
	c.goRun(ro, func(ctx context.Context) { c.promote(ctx, ro, d, cur, false) })
	return out, nil
}

// checkReleaseBranch reacts to e's release branch moved by a plain git push.
func (c *Controller) checkReleaseBranch(ctx context.Context, e *Env, head func(string) (string, bool)) bool {
	h, ok := head(e.Branch)
	if ok {
		c.noteBranchGone(e, h)
	}
	if !ok || h == "" {
		return ok
	}
	if tip, ok := head(c.rootBranch(e).Branch); !ok || tip == "" {
		return ok // nothing to check a release against yet
	}
	ro, err := c.rollouts.tryCheck(ledger.Deployment{Env: e.Name, Kind: ledger.KindRelease, Commit: h, State: ledger.StatePending, Step: "preflight"})
	if err != nil {
		return false // busy: the next poll looks again
	}
	handedOver := false
	defer func() {
		if !handedOver {
			ro.end()
		}
	}()
	cur, err := c.deps.Store.Current(ctx, e.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		c.log.Warn("read the ledger", "err", err)
		return false
	}
	if h != cur.Commit {
		// The poll read the branch before it took the environment: a
		// release or rollback that ended in between moved the branch
		// itself, and h is what it pointed at before. Only the branch as
		// it is now is a push.
		now, err := c.deps.Repo.Head(ctx, e.Branch)
		if err != nil || now != h {
			return false // the next poll looks again
		}
	}
	c.mu.Lock()
	seen := c.refused[e.Name] == h
	if h == cur.Commit {
		// The branch tells the truth again: a commit refused before may
		// be pushed again later (verified by then).
		delete(c.refused, e.Name)
	}
	c.mu.Unlock()
	if seen || h == cur.Commit || cur.Kind == ledger.KindStop {
		return true
	}
	if c.onItsWay(ctx, c.envs[e.RequireVerifiedOn], h, head) {
		return true // its deployment there will write to the ledger
	}
	d, err := c.prepareRelease(ctx, ro, e, cur, h, "git push to "+e.Branch, false, "")
	var refused *RefusedError
	if err != nil && !errors.As(err, &refused) {
		// Not a verdict on the commit (git or the ledger failed): the next
		// poll tries again.
		c.log.Warn("check the release branch", "env", e.Name, "commit", shortHash(h), "err", err)
		return false
	}
	if err != nil {
		c.mu.Lock()
		c.refused[e.Name] = h
		c.mu.Unlock()
		c.log.Warn("release refused", "env", e.Name, "commit", shortHash(h), "err", err)
		if cur.ID != 0 {
			if err := c.deps.Repo.MoveBranch(ctx, e.Branch, h, cur.Commit); err != nil {
				c.log.Warn("point the release branch back", "branch", e.Branch, "err", err)
			}
		}
		return true
	}
	handedOver = true
	c.goRun(ro, func(ctx context.Context) { c.promote(ctx, ro, d, cur, false) })
	return true
}

// onItsWay reports whether commit is about to reach e by itself: queued or
// in flight there, the head of its branch not taken yet, or on its way to
// (or verified on) the environment it is fed from.
func (c *Controller) onItsWay(ctx context.Context, e *Env, commit string, head func(string) (string, bool)) bool {
	if e == nil || !e.Automatic {
		return false
	}
	if c.queues[e.Name].pending(commit) {
		return true
	}
	if _, err := c.deps.Store.LatestForCommit(ctx, e.Name, ledger.KindDeploy, commit); !errors.Is(err, ledger.ErrNoDeployment) {
		return false // dealt with already (or the ledger failed: the preflight says so)
	}
	if e.From == "" {
		h, ok := head(e.Branch)
		return ok && h == commit
	}
	up, err := c.deps.Store.Current(ctx, e.From)
	if err == nil && up.Commit == commit {
		return true
	}
	return c.onItsWay(ctx, c.envs[e.From], commit, head)
}

// prepareRelease runs the preflight of commit against e's current
// deployment cur and records the outcome: a refused row, or a pending
// release row.
func (c *Controller) prepareRelease(ctx context.Context, ro *rollout, e *Env, cur ledger.Deployment, commit, trigger string, force bool, reason string) (*ledger.Deployment, error) {
	d := &ledger.Deployment{
		Env: e.Name, Kind: ledger.KindRelease, Trigger: trigger, Commit: commit,
		PreviousID: cur.ID, Replicas: e.Replicas, State: ledger.StatePending, Step: "preflight",
	}
	if cur.ID != 0 && cur.Replicas > 0 {
		d.Replicas = cur.Replicas
	}
	began := c.now()
	hold := c.held(e)
	if hold != nil && !force {
		reason := hold.Reason + "; wait for it to open, or break the glass with --force --reason"
		return nil, c.refuse(ctx, d, began, &RefusedError{Env: e.Name, Commit: commit, Reason: reason, Err: hold.Err})
	}
	verified, perr := c.preflight(ctx, e, cur, commit)
	if perr != nil && !force {
		var re *RefusedError
		if !errors.As(perr, &re) {
			return nil, perr
		}
		return nil, c.refuse(ctx, d, began, re)
	}
	if force {
		d.Forced, d.ForceReason = true, reason
		if perr != nil {
			d.Note = "preflight overridden: " + perr.Error()
		}
		if hold != nil {
			d.Note = joinNote("break-glass: "+hold.Reason, d.Note)
		}
	}
	img := Image{Ref: verified.Image, Digest: verified.Digest, Schema: verified.Schema}
	if img.Digest == "" {
		// Only a forced release of a commit never verified gets here: the
		// builder returns the commit's image, building it if there is none.
		built, err := c.deps.Builder.Build(ctx, commit, nil)
		if err != nil {
			return nil, fmt.Errorf("release %s: no image for it: %w", shortHash(commit), err)
		}
		img = built
	}
	d.Image, d.Digest, d.Schema = img.Ref, img.Digest, img.Schema
	problem, err := c.releaseSchema(ctx, e, cur, *d)
	if err != nil {
		return nil, err
	}
	if problem != "" && !force {
		return nil, c.refuse(ctx, d, began, &RefusedError{Env: e.Name, Commit: commit, Reason: problem, Err: ErrSchema})
	}
	if problem != "" {
		d.Note = joinNote(d.Note, "schema check overridden: "+problem)
	}
	if e == c.final {
		name, err := c.nextReleaseName(ctx)
		if err != nil {
			return nil, err
		}
		d.ReleaseName = name
	}
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return nil, err
	}
	crashpoint.Hit("release.recorded")
	if force && hold != nil {
		c.breakGlass(ctx, d, hold)
	}
	if problem != "" {
		c.schemaOverridden(ctx, d, problem)
	}
	switch {
	case perr != nil:
		c.recordDone(ctx, d, "preflight", began, ledger.StepSkipped, "overridden by --force: "+perr.Error())
	case force:
		c.recordDone(ctx, d, "preflight", began, ledger.StepSkipped, "passed, and --force given")
	default:
		c.recordDone(ctx, d, "preflight", began, ledger.StepSucceeded, "")
	}
	ro.set(*d)
	return d, nil
}

// refuse records d as refused for re's reason and returns re.
func (c *Controller) refuse(ctx context.Context, d *ledger.Deployment, began time.Time, re *RefusedError) error {
	d.State, d.Reason = ledger.StateRefused, re.Reason
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return err
	}
	c.recordDone(ctx, d, "preflight", began, ledger.StepFailed, re.Reason)
	c.notifyFinal(ctx, d)
	return re
}

// breakGlass logs and notifies a forced release d to an environment held
// by a lock or freeze window; the row records it (forced, its reason, and
// a note naming the hold).
func (c *Controller) breakGlass(ctx context.Context, d *ledger.Deployment, hold *HoldError) {
	c.log.Warn("break-glass release", "env", d.Env, "commit", shortHash(d.Commit), "deployment", d.ID, "hold", hold.Reason, "reason", d.ForceReason)
	c.notify(ctx, EventBreakGlass, d.Env, fmt.Sprintf("break-glass release of %s to %s of %s (deployment %d, %s): %s; overriding: %s",
		shortHash(d.Commit), d.Env, c.cfg.App, d.ID, d.Trigger, d.ForceReason, hold.Reason), map[string]string{
		"commit": d.Commit, "deployment": fmt.Sprint(d.ID), "release": d.ReleaseName, "by": d.Trigger,
		"reason": d.ForceReason, "hold": hold.Reason,
	})
}

// rootBranch is the branch whose commits reach e: the branch of the first
// environment of its chain.
func (c *Controller) rootBranch(e *Env) *Env {
	for range len(c.cfg.Envs) {
		up := e.upstream()
		if up == "" {
			break
		}
		e = c.envs[up]
	}
	return e
}

// preflight checks that commit may be released to e after cur; it returns
// the commit's verified deployment on the environment e requires.
func (c *Controller) preflight(ctx context.Context, e *Env, cur ledger.Deployment, commit string) (ledger.Deployment, error) {
	refuse := func(sentinel error, format string, args ...any) (ledger.Deployment, error) {
		return ledger.Deployment{}, &RefusedError{Env: e.Name, Commit: commit, Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	if cur.ID != 0 {
		ok, err := c.deps.Repo.IsAncestor(ctx, cur.Commit, commit)
		if err != nil {
			return ledger.Deployment{}, err
		}
		if !ok {
			what := cur.ReleaseName
			if what == "" {
				what = "what it runs"
			}
			return refuse(ErrNotFastForward, "%s is not a fast-forward of the current release %s (%s); release a commit that descends from it, or roll back instead", shortHash(commit), what, shortHash(cur.Commit))
		}
	}
	root := c.rootBranch(e)
	tip, err := c.deps.Repo.Head(ctx, root.Branch)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if tip == "" {
		return refuse(ErrNotInSource, "branch %s does not exist", root.Branch)
	}
	ok, err := c.deps.Repo.IsAncestor(ctx, commit, tip)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if !ok {
		return refuse(ErrNotInSource, "%s is not contained in %s; merge it into %s first", shortHash(commit), root.Branch, root.Branch)
	}
	up := c.envs[e.RequireVerifiedOn]
	last, err := c.verifiedOn(ctx, up, commit)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			re.Env, re.Commit = e.Name, commit
		}
		return ledger.Deployment{}, err
	}
	if e.MinTimeVerified > 0 {
		on := c.since(last.FinishedAt)
		if on < e.MinTimeVerified {
			return refuse(ErrTooSoon, "%s has been verified on %s for %s; %s needs %s", shortHash(commit), up.Name, on.Round(time.Second), e.Name, e.MinTimeVerified)
		}
	}
	return last, nil
}

// verifiedOn returns the deployment that verified commit on e, or a
// *RefusedError saying why there is none.
func (c *Controller) verifiedOn(ctx context.Context, e *Env, commit string) (ledger.Deployment, error) {
	refuse := func(sentinel error, format string, args ...any) (ledger.Deployment, error) {
		return ledger.Deployment{}, &RefusedError{Env: e.Name, Commit: commit, Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	kind := ledger.KindDeploy
	if !e.Automatic {
		kind = ledger.KindRelease
	}
	last, err := c.deps.Store.LatestForCommit(ctx, e.Name, kind, commit)
	if errors.Is(err, ledger.ErrNoDeployment) && !e.Automatic {
		last, err = c.deps.Store.LatestForCommit(ctx, e.Name, ledger.KindRollback, commit)
	}
	if errors.Is(err, ledger.ErrNoDeployment) {
		if e.Automatic && e.From == "" {
			return refuse(ErrNotVerified, "%s was never deployed to %s; only the newest commit of %s is deployed there", shortHash(commit), e.Name, e.Branch)
		}
		return refuse(ErrNotVerified, "%s was never deployed to %s (it takes %s)", shortHash(commit), e.Name, e.feed())
	}
	if err != nil {
		return ledger.Deployment{}, err
	}
	switch last.State {
	case ledger.StateSucceeded:
		return last, nil
	case ledger.StatePending, ledger.StateRolling:
		return refuse(ErrNotVerified, "%s is still being checked on %s (step %s); wait for it", shortHash(commit), e.Name, last.Step)
	}
	return refuse(ErrNotVerified, "%s failed on %s at step %s: %s", shortHash(commit), e.Name, last.Step, last.Reason)
}

// ReleaseName is the name of a release made at t: RCyyyyMMdd_HHmm in UTC.
func ReleaseName(t time.Time) string {
	return "RC" + t.UTC().Format("20060102_1504")
}

func (c *Controller) nextReleaseName(ctx context.Context) (string, error) {
	base := ReleaseName(c.now())
	used, err := c.deps.Store.ReleaseNames(ctx, base)
	if err != nil {
		return "", err
	}
	return uniqueName(base, used), nil
}

// uniqueName returns base, or base_2, base_3 … the first one not in used.
func uniqueName(base string, used []string) string {
	taken := map[string]bool{}
	for _, u := range used {
		taken[u] = true
	}
	if !taken[base] {
		return base
	}
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s_%d", base, i)
		if !taken[n] {
			return n
		}
	}
}
