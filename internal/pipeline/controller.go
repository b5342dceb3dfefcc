// Package pipeline is slipway's controller: it watches the app's branches and
// takes every commit through its steps — master → build → dev → health →
// smoke → verified, and release → preflight → tags → prod — one rollout per
// environment at a time, writing each deployment to the ledger before acting
// on it and finishing or undoing what was in flight after a restart.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// LiveTag is the registry tag on the image the controlled environment runs.
const LiveTag = "live"

// Env is one environment as the controller drives it.
type Env struct {
	Name string
	// Branch is the branch the environment tracks.
	Branch string
	// Automatic environments deploy every new head of Branch; the others are
	// controlled and deploy only released commits.
	Automatic bool
	// URL is where the environment answers (its load balancer).
	URL string
	// Replicas is the initial replica count (scale changes it).
	Replicas int
	// MinTimeOnSource is how long a commit must have been verified on the
	// automatic environment before it may be released here.
	MinTimeOnSource time.Duration
}

// Config is the controller's configuration.
type Config struct {
	// Envs: exactly one automatic environment (the source, dev) and at most
	// one controlled environment (prod).
	Envs []Env
	// PollInterval is how often the repository is fetched (2 s by default).
	PollInterval time.Duration
	// HealthTimeout bounds the wait for an environment to report healthy
	// after a rollout (30 s by default).
	HealthTimeout time.Duration
}

// Deps are the parts the controller drives.
type Deps struct {
	Repo     Repo
	Builder  Builder
	Tagger   Tagger
	Deployer Deployer
	Smoker   Smoker
	Store    Store
	Logger   *slog.Logger
	Now      func() time.Time
}

// Controller runs the pipeline. Create it with New, then Run it.
type Controller struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	source  *Env
	release *Env // nil without a controlled environment
	envs    map[string]*envState

	ready  chan struct{}
	runCtx context.Context
	wg     sync.WaitGroup
	wakeUp chan struct{} // poll now

	mu         sync.Mutex
	queued     string // the next commit for the source environment
	inFlight   string // the commit the source environment works on
	devWake    chan struct{}
	lastMaster string
	refused    map[string]bool // release heads refused already
}

type envState struct {
	cfg  *Env
	mu   sync.Mutex
	busy *ledger.Deployment // the rollout in flight; only its owner touches its fields
	snap ledger.Deployment  // a copy of busy, refreshed on every save
	done chan struct{}      // closed when busy ends
}

// New checks cfg and returns a controller.
func New(cfg Config, deps Deps) (*Controller, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 30 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	c := &Controller{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Logger,
		now:     deps.Now,
		envs:    map[string]*envState{},
		ready:   make(chan struct{}),
		wakeUp:  make(chan struct{}, 1),
		devWake: make(chan struct{}, 1),
		refused: map[string]bool{},
	}
	for i := range cfg.Envs {
		e := &cfg.Envs[i]
		if e.Name == "" || e.Branch == "" {
			return nil, fmt.Errorf("environment %d: name and branch are required", i+1)
		}
		if _, dup := c.envs[e.Name]; dup {
			return nil, fmt.Errorf("environment %s: defined twice", e.Name)
		}
		if e.Replicas <= 0 {
			e.Replicas = 1
		}
		c.envs[e.Name] = &envState{cfg: e}
		switch {
		case e.Automatic && c.source != nil:
			return nil, fmt.Errorf("environments %s and %s are both automatic: the controller drives one automatic environment (the source of releases)", c.source.Name, e.Name)
		case e.Automatic:
			c.source = e
		case c.release != nil:
			return nil, fmt.Errorf("environments %s and %s are both controlled: the controller drives one controlled environment", c.release.Name, e.Name)
		default:
			c.release = e
		}
	}
	if c.source == nil {
		return nil, errors.New("no automatic environment: one environment must deploy every push of its branch (dev ← master)")
	}
	return c, nil
}

// Envs returns the environments in configuration order.
func (c *Controller) Envs() []Env { return c.cfg.Envs }

// Run reconciles what was in flight, then watches the repository until ctx
// ends, and waits for the work it started.
func (c *Controller) Run(ctx context.Context) error {
	c.runCtx = ctx
	if err := c.reconcile(ctx); err != nil {
		return err
	}
	close(c.ready)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.sourceWorker(ctx)
	}()
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		c.poll(ctx)
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return nil
		case <-t.C:
		case <-c.wakeUp:
		}
	}
}

// Poll asks the controller to look at the repository now.
func (c *Controller) Poll() {
	select {
	case c.wakeUp <- struct{}{}:
	default:
	}
}

func (c *Controller) waitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the controller to start: %w", ctx.Err())
	}
}

// poll fetches the repository and reacts to moved branches.
func (c *Controller) poll(ctx context.Context) {
	if err := c.deps.Repo.Fetch(ctx); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("fetch the app repository", "err", err)
		}
		return
	}
	head, err := c.deps.Repo.Head(ctx, c.source.Branch)
	if err != nil {
		c.log.Warn("read branch", "branch", c.source.Branch, "err", err)
		return
	}
	c.mu.Lock()
	moved := head != "" && head != c.lastMaster
	c.lastMaster = head
	c.mu.Unlock()
	if moved {
		last, err := c.deps.Store.LatestForCommit(ctx, c.source.Name, ledger.KindDeploy, head)
		switch {
		case errors.Is(err, ledger.ErrNoDeployment):
			c.enqueue(head)
		case err != nil:
			c.log.Warn("read the ledger", "err", err)
		case last.State == ledger.StateSucceeded:
			// The branch went back to a commit verified before: deploy it
			// again (its image exists) unless it is what runs.
			if cur, err := c.deps.Store.Current(ctx, c.source.Name); err == nil && cur.Commit != head {
				c.enqueue(head)
			}
		}
	}
	if c.release != nil {
		c.checkReleaseBranch(ctx, head)
	}
}

// enqueue makes commit the next one the source environment deploys,
// replacing any commit that waits: the newest commit wins.
func (c *Controller) enqueue(commit string) {
	c.mu.Lock()
	if c.queued != "" && c.queued != commit {
		c.log.Info("superseded before deploy", "env", c.source.Name, "commit", shortHash(c.queued), "by", shortHash(commit))
	}
	c.queued = commit
	c.mu.Unlock()
	select {
	case c.devWake <- struct{}{}:
	default:
	}
}

func (c *Controller) sourceWorker(ctx context.Context) {
	for {
		c.mu.Lock()
		commit := c.queued
		c.queued = ""
		c.inFlight = commit
		c.mu.Unlock()
		if commit != "" {
			c.deploySource(ctx, commit)
			c.mu.Lock()
			c.inFlight = ""
			c.mu.Unlock()
			c.Poll() // a release waiting for this commit can go now
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-c.devWake:
		}
	}
}

// sourcePending reports whether the source environment has commit queued or
// in flight.
func (c *Controller) sourcePending(commit string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued == commit || c.inFlight == commit
}

// acquire waits until env has no rollout in flight and marks d as its
// rollout. release (the returned func) ends it.
func (st *envState) acquire(ctx context.Context, d *ledger.Deployment) error {
	st.mu.Lock()
	for st.busy != nil {
		ch := st.done
		st.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		st.mu.Lock()
	}
	st.busy, st.snap = d, *d
	st.done = make(chan struct{})
	st.mu.Unlock()
	return nil
}

// tryAcquire is acquire without waiting; the caller holds st.mu.
func (st *envState) tryAcquireLocked(d *ledger.Deployment) error {
	if st.busy != nil {
		return fmt.Errorf("%s of %s on %s (deployment %d) is in flight: wait for it (slipway status): %w",
			st.busy.Kind, shortHash(st.busy.Commit), st.cfg.Name, st.busy.ID, ErrBusy)
	}
	st.busy, st.snap = d, *d
	st.done = make(chan struct{})
	return nil
}

func (st *envState) releaseLock() {
	st.mu.Lock()
	st.busy = nil
	if st.done != nil {
		close(st.done)
		st.done = nil
	}
	st.mu.Unlock()
}

func (st *envState) inFlight() *ledger.Deployment {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.busy == nil {
		return nil
	}
	d := st.snap
	return &d
}

// deploySource takes one commit through the source environment's steps:
// build → deploy → health → smoke → verified.
func (c *Controller) deploySource(ctx context.Context, commit string) {
	env := c.source
	st := c.envs[env.Name]
	d := &ledger.Deployment{
		Env: env.Name, Kind: ledger.KindDeploy, Trigger: "push to " + env.Branch,
		Commit: commit, State: ledger.StatePending, Step: "build",
	}
	if err := st.acquire(ctx, d); err != nil {
		return
	}
	defer st.releaseLock()
	prev, err := c.deps.Store.Current(ctx, env.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		c.log.Error("read the ledger", "env", env.Name, "err", err)
		return
	}
	d.PreviousID = prev.ID
	d.Replicas = env.Replicas
	if prev.ID != 0 {
		d.Replicas = prev.Replicas
	}
	if err := c.deps.Store.Create(ctx, d); err != nil {
		c.log.Error("record deployment", "env", env.Name, "err", err)
		return
	}
	c.refresh(d)
	log := c.log.With("env", env.Name, "commit", shortHash(commit), "deployment", d.ID)
	log.Info("build")
	img, err := c.deps.Builder.Build(ctx, commit)
	if err != nil {
		c.fail(ctx, log, d, fmt.Sprintf("build failed: %v", err))
		return
	}
	d.Image, d.Digest = img.Ref, img.Digest
	d.State, d.Step = ledger.StateRolling, "deploy"
	if err := c.save(ctx, d); err != nil {
		log.Error("record deployment", "err", err)
		return
	}
	log.Info("deploy", "digest", img.Digest, "replicas", d.Replicas)
	if err := c.deps.Deployer.Deploy(ctx, *d); err != nil {
		c.fail(ctx, log, d, fmt.Sprintf("rollout failed, %s keeps its last good version: %v", env.Name, err))
		return
	}
	d.Step = "health"
	_ = c.save(ctx, d)
	if err := c.waitHealthy(ctx, env.Name, d.Replicas); err != nil {
		c.fail(ctx, log, d, c.restore(ctx, env, prev, fmt.Sprintf("not healthy after the rollout: %v", err)))
		return
	}
	d.Step = "smoke"
	_ = c.save(ctx, d)
	log.Info("smoke test", "url", env.URL)
	if err := c.deps.Smoker.Smoke(ctx, env.Name, commit, env.URL); err != nil {
		c.fail(ctx, log, d, c.restore(ctx, env, prev, fmt.Sprintf("smoke test failed: %v", err)))
		return
	}
	d.State, d.Step = ledger.StateSucceeded, "verified"
	if err := c.save(ctx, d); err != nil {
		log.Error("record deployment", "err", err)
		return
	}
	log.Info("verified", "digest", img.Digest)
}

// restore puts env back on prev after a failed check, and returns the reason
// to record.
func (c *Controller) restore(ctx context.Context, env *Env, prev ledger.Deployment, reason string) string {
	if ctx.Err() != nil {
		return reason
	}
	if prev.ID == 0 {
		return reason + "; there is no earlier version to go back to"
	}
	if err := c.deps.Deployer.Deploy(ctx, prev); err != nil {
		return fmt.Sprintf("%s; going back to %s also failed: %v", reason, shortHash(prev.Commit), err)
	}
	return fmt.Sprintf("%s; %s is back on %s", reason, env.Name, shortHash(prev.Commit))
}

// fail finishes d as failed, unless the controller is stopping: then d stays
// in flight and is taken up again after the restart.
func (c *Controller) fail(ctx context.Context, log *slog.Logger, d *ledger.Deployment, reason string) {
	if ctx.Err() != nil {
		log.Info("interrupted by shutdown; resumed at the next start", "step", d.Step)
		return
	}
	d.State, d.Reason = ledger.StateFailed, reason
	if err := c.save(ctx, d); err != nil {
		log.Error("record deployment", "err", err)
	}
	log.Warn("failed", "step", d.Step, "reason", reason)
}

func (c *Controller) save(ctx context.Context, d *ledger.Deployment) error {
	// Finishing a row must not be lost to the caller's cancellation.
	err := c.deps.Store.Update(context.WithoutCancel(ctx), d)
	c.refresh(d)
	return err
}

// refresh copies d into its environment's snapshot when d is in flight.
func (c *Controller) refresh(d *ledger.Deployment) {
	if st := c.envs[d.Env]; st != nil {
		st.mu.Lock()
		if st.busy == d {
			st.snap = *d
		}
		st.mu.Unlock()
	}
}

// waitHealthy waits until env reports healthy with at least want replicas
// ready, or until the health timeout.
func (c *Controller) waitHealthy(ctx context.Context, env string, want int) error {
	deadline := time.NewTimer(c.cfg.HealthTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last Health
	for {
		h, err := c.deps.Deployer.Health(ctx, env)
		if err == nil && h.Healthy && h.Ready >= want {
			return nil
		}
		last = h
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			if err != nil {
				return err
			}
			return fmt.Errorf("%d of %d replicas ready after %s", last.Ready, want, c.cfg.HealthTimeout)
		case <-tick.C:
		}
	}
}

// checkReleaseBranch reacts to a release branch moved by a plain git push.
func (c *Controller) checkReleaseBranch(ctx context.Context, masterHead string) {
	env := c.release
	st := c.envs[env.Name]
	head, err := c.deps.Repo.Head(ctx, env.Branch)
	if err != nil {
		c.log.Warn("read branch", "branch", env.Branch, "err", err)
		return
	}
	if head == "" || masterHead == "" {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.busy != nil {
		return
	}
	cur, err := c.deps.Store.Current(ctx, env.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		c.log.Warn("read the ledger", "err", err)
		return
	}
	if head == cur.Commit {
		// The branch tells the truth again: a commit refused before may
		// be pushed again later (verified by then).
		c.mu.Lock()
		clear(c.refused)
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	seen := c.refused[head]
	c.mu.Unlock()
	if seen {
		return
	}
	// A commit the source environment is still working on is waited for.
	if c.sourcePending(head) {
		return
	}
	if _, err := c.deps.Store.LatestForCommit(ctx, c.source.Name, ledger.KindDeploy, head); errors.Is(err, ledger.ErrNoDeployment) && head == masterHead {
		return
	}
	d, err := c.prepareRelease(ctx, env, cur, head, "git push to "+env.Branch, false, "")
	var refused *RefusedError
	if err != nil && !errors.As(err, &refused) {
		// Not a verdict on the commit (git or the ledger failed): the next
		// poll tries again.
		c.log.Warn("check the release branch", "env", env.Name, "commit", shortHash(head), "err", err)
		return
	}
	if err != nil {
		c.mu.Lock()
		c.refused[head] = true
		c.mu.Unlock()
		c.log.Warn("release refused", "env", env.Name, "commit", shortHash(head), "err", err)
		if cur.ID != 0 {
			if err := c.deps.Repo.MoveBranch(ctx, env.Branch, head, cur.Commit); err != nil {
				c.log.Warn("point the release branch back", "branch", env.Branch, "err", err)
			}
		}
		return
	}
	if err := st.tryAcquireLocked(d); err != nil {
		return
	}
	c.goPromote(d, cur)
}

// ReleaseRequest asks for a release.
type ReleaseRequest struct {
	// Env is the controlled environment to release to; empty means the
	// final environment.
	Env string
	// Commit is a revision; empty means the newest commit verified on the
	// source environment.
	Commit string
	// Force skips the preflight; Reason is then required and recorded.
	Force   bool
	Reason  string
	Trigger string
}

// RollbackRequest asks for a rollback.
type RollbackRequest struct {
	// Env is the controlled environment to roll back; empty means the
	// final environment.
	Env string
	// Target is an RC name or a commit; empty means the release live
	// before the current one.
	Target  string
	Trigger string
}

// Release checks and starts a release; it returns the deployment once it is
// recorded, and the rollout goes on in the background. A failed preflight is
// recorded and returned as a *RefusedError; prod is untouched.
func (c *Controller) Release(ctx context.Context, req ReleaseRequest) (ledger.Deployment, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Deployment{}, err
	}
	env := c.release
	if env == nil {
		return ledger.Deployment{}, ErrNoControlledEnv
	}
	if req.Force && strings.TrimSpace(req.Reason) == "" {
		return ledger.Deployment{}, fmt.Errorf("release --force: say why with --reason: %w", ErrReasonRequired)
	}
	if req.Trigger == "" {
		req.Trigger = "release command"
	}
	var commit string
	if req.Commit == "" {
		v, err := c.deps.Store.Verified(ctx, c.source.Name)
		if errors.Is(err, ledger.ErrNoDeployment) {
			return ledger.Deployment{}, fmt.Errorf("release: no commit is verified on %s yet; push to %s and wait for it, or name a commit: %w", c.source.Name, c.source.Branch, ErrNotVerified)
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
	st := c.envs[env.Name]
	// Hold the environment for the preflight, which may have to build a
	// forced commit: nothing else may roll it out meanwhile, and status
	// stays answerable.
	hold := &ledger.Deployment{Env: env.Name, Kind: ledger.KindRelease, Commit: commit, State: ledger.StatePending, Step: "preflight"}
	st.mu.Lock()
	err := st.tryAcquireLocked(hold)
	st.mu.Unlock()
	if err != nil {
		return ledger.Deployment{}, err
	}
	cur, err := c.deps.Store.Current(ctx, env.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		st.releaseLock()
		return ledger.Deployment{}, err
	}
	if cur.ID != 0 && cur.Commit == commit {
		st.releaseLock()
		return ledger.Deployment{}, fmt.Errorf("release %s: %s already runs it (%s): %w", shortHash(commit), env.Name, cur.ReleaseName, ErrAlreadyLive)
	}
	d, err := c.prepareRelease(ctx, env, cur, commit, req.Trigger, req.Force, req.Reason)
	if err != nil {
		st.releaseLock()
		return ledger.Deployment{}, err
	}
	st.mu.Lock()
	st.busy, st.snap = d, *d
	st.mu.Unlock()
	out := *d
	c.goPromote(d, cur)
	return out, nil
}

// prepareRelease runs the preflight of commit against the current release
// cur and records the outcome: a refused row, or a pending release row.
func (c *Controller) prepareRelease(ctx context.Context, env *Env, cur ledger.Deployment, commit, trigger string, force bool, reason string) (*ledger.Deployment, error) {
	d := &ledger.Deployment{
		Env: env.Name, Kind: ledger.KindRelease, Trigger: trigger, Commit: commit,
		PreviousID: cur.ID, Replicas: env.Replicas, State: ledger.StatePending, Step: "preflight",
	}
	if cur.ID != 0 {
		d.Replicas = cur.Replicas
	}
	verified, perr := c.preflight(ctx, env, cur, commit)
	if perr != nil && !force {
		var re *RefusedError
		if !errors.As(perr, &re) {
			return nil, perr
		}
		d.State, d.Reason = ledger.StateRefused, re.Reason
		if err := c.deps.Store.Create(ctx, d); err != nil {
			return nil, err
		}
		return nil, perr
	}
	if force {
		d.Forced, d.ForceReason = true, reason
		if perr != nil {
			d.Note = "preflight overridden: " + perr.Error()
		}
	}
	img := Image{Ref: verified.Image, Digest: verified.Digest}
	if img.Digest == "" {
		// Only a forced release of a commit never verified gets here: the
		// builder returns the commit's image, building it if there is none.
		built, err := c.deps.Builder.Build(ctx, commit)
		if err != nil {
			return nil, fmt.Errorf("release %s: no image for it: %w", shortHash(commit), err)
		}
		img = built
	}
	d.Image, d.Digest = img.Ref, img.Digest
	name, err := c.nextReleaseName(ctx)
	if err != nil {
		return nil, err
	}
	d.ReleaseName = name
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return nil, err
	}
	return d, nil
}

// preflight checks that commit may be released after cur; it returns the
// commit's verified deployment on the source environment.
func (c *Controller) preflight(ctx context.Context, env *Env, cur ledger.Deployment, commit string) (ledger.Deployment, error) {
	refuse := func(sentinel error, format string, args ...any) (ledger.Deployment, error) {
		return ledger.Deployment{}, &RefusedError{Env: env.Name, Commit: commit, Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	if cur.ID != 0 {
		ok, err := c.deps.Repo.IsAncestor(ctx, cur.Commit, commit)
		if err != nil {
			return ledger.Deployment{}, err
		}
		if !ok {
			return refuse(ErrNotFastForward, "%s is not a fast-forward of the current release %s (%s); release a commit that descends from it, or roll back instead", shortHash(commit), cur.ReleaseName, shortHash(cur.Commit))
		}
	}
	master, err := c.deps.Repo.Head(ctx, c.source.Branch)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if master == "" {
		return refuse(ErrNotInSource, "branch %s does not exist", c.source.Branch)
	}
	ok, err := c.deps.Repo.IsAncestor(ctx, commit, master)
	if err != nil {
		return ledger.Deployment{}, err
	}
	if !ok {
		return refuse(ErrNotInSource, "%s is not contained in %s; merge it into %s first", shortHash(commit), c.source.Branch, c.source.Branch)
	}
	last, err := c.deps.Store.LatestForCommit(ctx, c.source.Name, ledger.KindDeploy, commit)
	if errors.Is(err, ledger.ErrNoDeployment) {
		return refuse(ErrNotVerified, "%s was never deployed to %s; only the newest commit of %s is deployed there", shortHash(commit), c.source.Name, c.source.Branch)
	}
	if err != nil {
		return ledger.Deployment{}, err
	}
	switch last.State {
	case ledger.StateSucceeded:
	case ledger.StatePending, ledger.StateRolling:
		return refuse(ErrNotVerified, "%s is still being checked on %s (step %s); wait for it", shortHash(commit), c.source.Name, last.Step)
	default:
		return refuse(ErrNotVerified, "%s failed on %s at step %s: %s", shortHash(commit), c.source.Name, last.Step, last.Reason)
	}
	if env.MinTimeOnSource > 0 {
		on := c.now().Sub(last.FinishedAt)
		if on < env.MinTimeOnSource {
			return refuse(ErrTooSoon, "%s has been verified on %s for %s; %s needs %s", shortHash(commit), c.source.Name, on.Round(time.Second), env.Name, env.MinTimeOnSource)
		}
	}
	return last, nil
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

// Rollback points the controlled environment back at an earlier release
// (target: an RC name or a commit; empty means the release live before the
// current one), and starts its rollout.
func (c *Controller) Rollback(ctx context.Context, target, trigger string) (ledger.Deployment, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Deployment{}, err
	}
	env := c.release
	if env == nil {
		return ledger.Deployment{}, ErrNoControlledEnv
	}
	if trigger == "" {
		trigger = "rollback command"
	}
	st := c.envs[env.Name]
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.busy != nil {
		return ledger.Deployment{}, st.tryAcquireLocked(nil)
	}
	cur, err := c.deps.Store.Current(ctx, env.Name)
	if errors.Is(err, ledger.ErrNoDeployment) {
		return ledger.Deployment{}, fmt.Errorf("rollback: %s has no release yet: %w", env.Name, ErrNothingReleased)
	}
	if err != nil {
		return ledger.Deployment{}, err
	}
	to, err := c.rollbackTarget(ctx, env, cur, target)
	if err != nil {
		return ledger.Deployment{}, err
	}
	d := &ledger.Deployment{
		Env: env.Name, Kind: ledger.KindRollback, Trigger: trigger, Commit: to.Commit,
		Image: to.Image, Digest: to.Digest, ReleaseName: to.ReleaseName, Replicas: cur.Replicas,
		PreviousID: cur.ID, State: ledger.StatePending, Step: "tags",
	}
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return ledger.Deployment{}, err
	}
	_ = st.tryAcquireLocked(d)
	out := *d
	c.goPromote(d, cur)
	return out, nil
}

func (c *Controller) rollbackTarget(ctx context.Context, env *Env, cur ledger.Deployment, target string) (ledger.Deployment, error) {
	if target == "" {
		rels, err := c.deps.Store.Releases(ctx, env.Name, 1000)
		if err != nil {
			return ledger.Deployment{}, err
		}
		for _, r := range rels {
			if r.Commit != cur.Commit {
				return c.releaseOf(ctx, env, r)
			}
		}
		return ledger.Deployment{}, fmt.Errorf("rollback: %s has had no release before %s: %w", env.Name, cur.ReleaseName, ErrNothingReleased)
	}
	var to ledger.Deployment
	var err error
	if strings.HasPrefix(target, "RC") {
		to, err = c.deps.Store.ReleaseByName(ctx, env.Name, target)
	} else {
		var full string
		full, err = c.deps.Repo.Resolve(ctx, target)
		if err != nil {
			return ledger.Deployment{}, err
		}
		to, err = c.deps.Store.ReleaseByCommit(ctx, env.Name, full)
	}
	if errors.Is(err, ledger.ErrNoDeployment) {
		return ledger.Deployment{}, fmt.Errorf("rollback to %s: it was never released to %s (slipway history %s lists the releases): %w", target, env.Name, env.Name, ErrNotReleased)
	}
	if err != nil {
		return ledger.Deployment{}, err
	}
	if to.Commit == cur.Commit {
		return ledger.Deployment{}, fmt.Errorf("rollback to %s: %s already runs %s: %w", target, env.Name, shortHash(cur.Commit), ErrAlreadyLive)
	}
	return to, nil
}

// releaseOf returns the original release of a release or rollback row, so
// that a rollback carries the release's own name and image.
func (c *Controller) releaseOf(ctx context.Context, env *Env, r ledger.Deployment) (ledger.Deployment, error) {
	if r.Kind == ledger.KindRelease || r.ReleaseName == "" {
		return r, nil
	}
	orig, err := c.deps.Store.ReleaseByName(ctx, env.Name, r.ReleaseName)
	if err != nil {
		return r, nil
	}
	return orig, nil
}

func (c *Controller) goPromote(d *ledger.Deployment, prev ledger.Deployment) {
	ctx := c.runCtx
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.envs[d.Env].releaseLock()
		c.promote(ctx, d, prev, false)
	}()
}

// promote takes a release or rollback row through its steps: tags, release
// branch, rollout, health; and undoes them when the rollout fails. restarted
// says the row was in flight when the controller started, and notes that.
func (c *Controller) promote(ctx context.Context, d *ledger.Deployment, prev ledger.Deployment, restarted bool) {
	note := ""
	if restarted {
		note = "undone after restart"
	}
	env := c.envs[d.Env].cfg
	log := c.log.With("env", env.Name, "commit", shortHash(d.Commit), "release", d.ReleaseName, "deployment", d.ID)
	d.Step = "tags"
	_ = c.save(ctx, d)
	err := func() error {
		if d.Kind == ledger.KindRelease {
			if err := c.deps.Tagger.Tag(ctx, d.Digest, d.ReleaseName); err != nil {
				return err
			}
			msg := fmt.Sprintf("%s: release of %s to %s", d.ReleaseName, shortHash(d.Commit), env.Name)
			if d.Forced {
				msg += " (forced: " + d.ForceReason + ")"
			}
			if err := c.deps.Repo.TagRelease(ctx, d.ReleaseName, d.Commit, msg); err != nil {
				return err
			}
		}
		if err := c.deps.Tagger.Tag(ctx, d.Digest, LiveTag); err != nil {
			return err
		}
		head, err := c.deps.Repo.Head(ctx, env.Branch)
		if err != nil {
			return err
		}
		if head != d.Commit {
			if err := c.deps.Repo.MoveBranch(ctx, env.Branch, head, d.Commit); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		d.State, d.Reason = ledger.StateFailed, c.undo(ctx, env, d, prev, fmt.Sprintf("tagging failed: %v", err))
		d.Note = joinNote(d.Note, note)
		_ = c.save(ctx, d)
		log.Warn("failed", "reason", d.Reason)
		return
	}
	d.State, d.Step = ledger.StateRolling, "deploy"
	_ = c.save(ctx, d)
	log.Info("roll out", "digest", d.Digest, "replicas", d.Replicas)
	err = c.deps.Deployer.Deploy(ctx, *d)
	if err == nil {
		d.Step = "health"
		_ = c.save(ctx, d)
		err = c.waitHealthy(ctx, env.Name, d.Replicas)
	}
	if ctx.Err() != nil {
		log.Info("interrupted by shutdown; resumed at the next start", "step", d.Step)
		return
	}
	if err != nil {
		reason := fmt.Sprintf("%s did not become healthy: %v", env.Name, err)
		if prev.ID != 0 {
			d.State = ledger.StateRolledBack
		} else {
			d.State = ledger.StateFailed
		}
		d.Reason = c.undo(ctx, env, d, prev, reason)
		d.Note = joinNote(d.Note, note)
		_ = c.save(ctx, d)
		log.Warn("rollout failed", "reason", d.Reason)
		return
	}
	d.State, d.Step = ledger.StateSucceeded, "live"
	if restarted {
		d.Note = joinNote(d.Note, "finished after restart")
	}
	_ = c.save(ctx, d)
	log.Info("live", "digest", d.Digest)
}

// undo puts env back on prev: its image, the live tag and the release branch.
func (c *Controller) undo(ctx context.Context, env *Env, d *ledger.Deployment, prev ledger.Deployment, reason string) string {
	if prev.ID == 0 {
		return reason + "; there is no earlier release to go back to"
	}
	var problems []string
	if err := c.deps.Deployer.Deploy(ctx, prev); err != nil {
		problems = append(problems, fmt.Sprintf("redeploy: %v", err))
	}
	if err := c.deps.Tagger.Tag(ctx, prev.Digest, LiveTag); err != nil {
		problems = append(problems, fmt.Sprintf("move %s back: %v", LiveTag, err))
	}
	head, err := c.deps.Repo.Head(ctx, env.Branch)
	if err == nil && head != prev.Commit {
		err = c.deps.Repo.MoveBranch(ctx, env.Branch, head, prev.Commit)
	}
	if err != nil {
		problems = append(problems, fmt.Sprintf("point %s back: %v", env.Branch, err))
	}
	msg := fmt.Sprintf("%s; rolled back to %s (%s)", reason, prev.ReleaseName, shortHash(prev.Commit))
	if len(problems) > 0 {
		msg += "; but: " + strings.Join(problems, "; ")
	}
	return msg
}

func joinNote(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// Scale changes the replica count of env, keeping its image.
func (c *Controller) Scale(ctx context.Context, envName string, replicas int) (ledger.Deployment, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Deployment{}, err
	}
	st, ok := c.envs[envName]
	if !ok {
		return ledger.Deployment{}, fmt.Errorf("scale %s: %w (environments: %s)", envName, ErrUnknownEnv, c.envNames())
	}
	if replicas < 1 {
		return ledger.Deployment{}, fmt.Errorf("scale %s=%d: at least 1 replica: %w", envName, replicas, ErrInvalid)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.busy != nil {
		return ledger.Deployment{}, st.tryAcquireLocked(nil)
	}
	cur, err := c.deps.Store.Current(ctx, envName)
	if errors.Is(err, ledger.ErrNoDeployment) {
		return ledger.Deployment{}, fmt.Errorf("scale %s: %w there yet", envName, ErrNotDeployed)
	}
	if err != nil {
		return ledger.Deployment{}, err
	}
	d := &ledger.Deployment{
		Env: envName, Kind: ledger.KindScale, Trigger: "scale command", Commit: cur.Commit,
		Image: cur.Image, Digest: cur.Digest, ReleaseName: cur.ReleaseName, Replicas: replicas,
		PreviousID: cur.ID, State: ledger.StatePending, Step: "deploy",
	}
	if err := c.deps.Store.Create(ctx, d); err != nil {
		return ledger.Deployment{}, err
	}
	_ = st.tryAcquireLocked(d)
	out := *d
	ctxRun := c.runCtx
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer st.releaseLock()
		c.scale(ctxRun, d, false)
	}()
	return out, nil
}

func (c *Controller) scale(ctx context.Context, d *ledger.Deployment, restarted bool) {
	d.State = ledger.StateRolling
	_ = c.save(ctx, d)
	err := c.deps.Deployer.Deploy(ctx, *d)
	if err == nil {
		err = c.waitHealthy(ctx, d.Env, d.Replicas)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		d.State, d.Reason = ledger.StateFailed, fmt.Sprintf("scale to %d: %v", d.Replicas, err)
	} else {
		d.State = ledger.StateSucceeded
	}
	if restarted {
		d.Note = joinNote(d.Note, "finished after restart")
	}
	_ = c.save(ctx, d)
}

func (c *Controller) envNames() string {
	var names []string
	for _, e := range c.cfg.Envs {
		names = append(names, e.Name)
	}
	return strings.Join(names, ", ")
}

// Deployment returns one deployment of the ledger.
func (c *Controller) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	return c.deps.Store.Get(ctx, id)
}

// History returns the newest deployments, of env when it is not empty.
func (c *Controller) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	if env != "" {
		if _, ok := c.envs[env]; !ok {
			return nil, fmt.Errorf("history %s: %w (environments: %s)", env, ErrUnknownEnv, c.envNames())
		}
	}
	if limit <= 0 {
		limit = 50
	}
	return c.deps.Store.Latest(ctx, env, limit)
}
