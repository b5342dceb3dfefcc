// Package pipeline is slipway's controller for one app: it watches the
// app's branches and takes every commit along its chain of environments —
// an automatic environment deploys each new head of its branch (build →
// deploy → health → smoke → verified), or each commit verified on the
// environment it is fed from (the same digest); a controlled environment
// takes only releases that pass the preflight. One rollout per environment
// at a time; every deployment is written to the ledger before it acts, and
// what was in flight at a restart is finished or undone.
//
// The package declares the parts it drives (deps.go) and imports only the
// ledger and the runtime's types; the wiring of real parts lives elsewhere.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"slipway.dev/slipway/internal/freeze"
	"slipway.dev/slipway/internal/ledger"
)

// LiveTag is the registry tag on the image the last environment runs.
const LiveTag = "live"

// EnvTag is the registry tag on the image environment env runs.
func EnvTag(env string) string { return "env-" + env }

// Env is one environment as the controller drives it.
type Env struct {
	Name string
	// Branch: for an automatic environment, the branch whose every new head
	// it deploys (empty when From is set); for a controlled one, the release
	// branch that follows its releases.
	Branch string
	// From, for an automatic environment, is the environment whose verified
	// commits it takes (the same image).
	From string
	// Automatic environments deploy without a command; the others are
	// controlled and take only releases.
	Automatic bool
	// RequireVerifiedOn, for a controlled environment, is where a commit
	// must have been verified before it is released here.
	RequireVerifiedOn string
	// MinTimeVerified is how long a commit must have been verified on From
	// or RequireVerifiedOn before this environment takes it.
	MinTimeVerified time.Duration
	// URL is where the environment answers (its load balancer).
	URL string
	// Replicas is the initial replica count (scale changes it).
	Replicas int
	// Freeze is when the environment takes no automatic deployment and no
	// release without --force (holds.go).
	Freeze freeze.Schedule
	// ReleasePhase says the environment runs a release command from each
	// new image before it rolls it out (Deps.ReleasePhase runs it).
	ReleasePhase bool
}

// Config is the controller's configuration. config.Validate has checked
// the environments; New only refuses what it cannot drive.
type Config struct {
	// App names the app in status.
	App string
	// Envs are the environments in chain order; the last one is the final
	// environment: it carries the live tag, release names and git tags.
	Envs []Env
	// PollInterval is how often the repository is fetched (2 s by default).
	PollInterval time.Duration
	// HealthTimeout bounds the wait for an environment to report healthy
	// after a rollout (30 s by default).
	HealthTimeout time.Duration
	// RetryFor is how long a step that fails transiently is tried again
	// (2 min by default); RetryBackoff is the first wait (1 s by default).
	RetryFor     time.Duration
	RetryBackoff time.Duration
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
	// Monotonic, when set, is a clock that only moves forward at the
	// pace of real time, whatever the wall clock does (clock.go); tests
	// set it with Now.
	Monotonic func() time.Duration
	// OnChange, when set, is called after every ledger write the
	// controller makes (deployment rows and their steps), holding none of
	// the controller's locks that status or a command waits on; it must
	// not block.
	OnChange func()
	// Notifier, when set, records the app's events for its outgoing
	// webhooks (notify.go).
	Notifier Notifier
	// Holds keeps the app's locks and pins (in memory when nil).
	Holds HoldStore
	// ReleasePhase runs the release phase of environments that have one
	// (Env.ReleasePhase); nil: none runs.
	ReleasePhase ReleasePhaser
}

// Controller runs one app's pipeline. Create it with New, then Run it.
type Controller struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	envs     map[string]*Env
	final    *Env
	queues   map[string]*queue // of automatic environments
	rollouts *rollouts

	ready  chan struct{}
	runCtx context.Context
	wg     sync.WaitGroup
	wakeUp chan struct{} // poll now
	pushes chan struct{} // a webhook announced a head (pushed)

	// writes counts the ledger writes of the controller; settledKey is the
	// poll key (pollKey) of the last poll that left nothing to look at
	// again, at settledAt. Only the poll loop reads the last two.
	writes     atomic.Uint64
	settledKey string
	settledAt  time.Time

	mu        sync.Mutex        // guards the maps below; never held across I/O
	lastHead  map[string]string // automatic environment → branch head last seen
	pushed    map[string]string // branch → head a webhook announced, not yet taken
	announced map[string]string // automatic environment → commit queued from a webhook
	refused   map[string]string // controlled environment → head refused already
	gone      map[string]bool   // controlled environment → its release branch is missing (rewritten.go)

	holds holds // locks and pins, as the ledger has them

	clockMu   sync.Mutex
	sightings map[int64]sighting // ledger time (ns) → when first seen (clock.go)
}

// New returns a controller for cfg's environments.
func New(cfg Config, deps Deps) (*Controller, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 30 * time.Second
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 2 * time.Minute
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Monotonic == nil {
		deps.Monotonic = monotonicSince()
	}
	c := &Controller{
		cfg: cfg, deps: deps, log: deps.Logger, now: deps.Now,
		envs: map[string]*Env{}, queues: map[string]*queue{}, rollouts: newRollouts(),
		ready: make(chan struct{}), wakeUp: make(chan struct{}, 1), pushes: make(chan struct{}, 1),
		lastHead: map[string]string{}, refused: map[string]string{}, gone: map[string]bool{},
		pushed: map[string]string{}, announced: map[string]string{},
		holds: holds{locks: map[string]ledger.Lock{}, pins: map[string]ledger.Pin{}},
	}
	if c.deps.Holds == nil {
		c.deps.Holds = newMemHolds()
	}
	c.deps.Store = notifyingStore{Store: deps.Store, onChange: func() {
		c.writes.Add(1)
		if deps.OnChange != nil {
			deps.OnChange()
		}
	}}
	if len(cfg.Envs) == 0 {
		return nil, fmt.Errorf("no environments to drive: %w", ErrInvalid)
	}
	for i := range c.cfg.Envs {
		e := &c.cfg.Envs[i]
		if e.Replicas <= 0 {
			e.Replicas = 1
		}
		if _, dup := c.envs[e.Name]; dup || e.Name == "" {
			return nil, fmt.Errorf("environment %d %q: empty or defined twice: %w", i+1, e.Name, ErrInvalid)
		}
		c.envs[e.Name] = e
		if e.Automatic {
			c.queues[e.Name] = newQueue()
		}
	}
	for _, e := range c.cfg.Envs {
		up := e.upstream()
		if _, ok := c.envs[up]; up != "" && !ok {
			return nil, fmt.Errorf("environment %s takes commits from %s, which is not configured: %w", e.Name, up, ErrInvalid)
		}
		if up == "" && e.Branch == "" {
			return nil, fmt.Errorf("environment %s has neither a branch nor an environment to take commits from: %w", e.Name, ErrInvalid)
		}
	}
	c.final = &c.cfg.Envs[len(c.cfg.Envs)-1]
	return c, nil
}

// upstream is the environment e takes its commits from: From for an
// automatic environment, RequireVerifiedOn for a controlled one.
func (e *Env) upstream() string {
	if e.Automatic {
		return e.From
	}
	return e.RequireVerifiedOn
}

// Envs returns the environments in configuration order.
func (c *Controller) Envs() []Env { return c.cfg.Envs }

// App is the app's name.
func (c *Controller) App() string { return c.cfg.App }

// Run takes up what was in flight, then watches the repository until ctx
// ends, and waits for the work it started.
func (c *Controller) Run(ctx context.Context) error {
	c.runCtx = ctx
	if err := c.loadHolds(ctx); err != nil {
		return fmt.Errorf("read the locks and pins: %w", err)
	}
	if err := c.reconcile(ctx); err != nil {
		return err
	}
	close(c.ready)
	for name, q := range c.queues {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.worker(ctx, c.envs[name], q)
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.pushLoop(ctx)
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

// env returns the environment named name, or ErrUnknownEnv naming the
// configured ones.
func (c *Controller) env(what, name string) (*Env, error) {
	if e, ok := c.envs[name]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("%s %s: %w (environments: %s)", what, name, ErrUnknownEnv, c.envNames())
}

func (c *Controller) envNames() string {
	s := ""
	for i, e := range c.cfg.Envs {
		if i > 0 {
			s += ", "
		}
		s += e.Name
	}
	return s
}

// goRun runs fn in the background until it returns, ending ro after it.
func (c *Controller) goRun(ro *rollout, fn func(ctx context.Context)) {
	ctx := c.runCtx
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer ro.end()
		fn(ctx)
	}()
}

// Deployment returns one deployment of the ledger.
func (c *Controller) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	return c.deps.Store.Get(ctx, id)
}

// History returns the newest deployments, of env when it is not empty.
func (c *Controller) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	if env != "" {
		if _, err := c.env("history", env); err != nil {
			return nil, err
		}
	}
	if limit <= 0 {
		limit = 50
	}
	return c.deps.Store.Latest(ctx, env, limit)
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
