// Package apps wires slipway's parts into one running controller for every
// app of the configuration: each app gets its repository mirror, builder,
// registry tags, runtime and pipeline; all of them share the ledger, the
// embedded registry and a limit on concurrent builds. It is the one place
// where the parts meet (serve and demo use it), and it is what the API
// serves.
package apps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/changes"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
)

// RuntimeDir is the local runtime's directory in the data directory; short,
// because the runtime's unix sockets live below it.
const RuntimeDir = "run"

// ErrConfig marks an error the configuration must fix (a Kubernetes
// cluster that cannot be found, say).
var ErrConfig = errors.New("configuration")

// Options say what to run and where.
type Options struct {
	Set *config.Set
	// DataDir is slipway's data directory (absolute).
	DataDir string
	// RegistryAddr is where the embedded registry listens.
	RegistryAddr string
	Store        *ledger.Store
	Logger       *slog.Logger
	// PollInterval, when set, overrides every app's repo.poll (tests).
	PollInterval time.Duration
	// Changes, when set, hears of every change of an app's deployments,
	// their steps and its builds; Open makes one when it is nil.
	Changes *changes.Hub
	// Notifier, when set, records every app's events for its
	// notifications (notify.Outbox); nil: none are recorded.
	Notifier pipeline.Notifier
	// Embedded, when set, is the embedded registry that image garbage
	// collection sweeps (gc.go).
	Embedded *registry.Embedded
}

// Backend is a runtime with logs.
type Backend interface {
	deploy.Backend
	deploy.LogSource
}

// Apps are the apps of one configuration, wired and ready to Run.
type Apps struct {
	opts  Options
	log   *slog.Logger
	list  []*App
	names map[string]*App
	slots chan struct{}
	// gc is what the apps' image collections share (gc.go).
	gc     *collector
	gcOnce sync.Once
}

// App is one app: its configuration, pipeline and runtime.
type App struct {
	Config     *config.Config
	Controller *pipeline.Controller
	Source     *gitsource.Source
	Backend    Backend
	Registry   *registry.Client
	Repository string
	repo       *GitRepo
	store      *ledger.Store
	deps       *ledger.Deployments
	builder    *build.Builder
	// firstCommits and ended keep what DORA read (dora.go).
	firstCommits firstCommits
	ended        endedDeployments
	// collect is the controller's image collection (gc.go).
	collect *collector
}

var (
	_ api.Apps = (*Apps)(nil)
	_ api.App  = (*App)(nil)
)

// Open wires every app of o.Set. It marks builds a previous run left
// unfinished as failed, and claims the ledger rows of an older,
// single-app slipway for the one app of a single-app configuration.
func Open(ctx context.Context, o Options) (*Apps, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Changes == nil {
		o.Changes = changes.NewHub()
	}
	// Every build row a builder of these apps writes goes through the
	// store: it tells the hub.
	o.Store.OnBuildChange(o.Changes.Publish)
	n := o.Set.BuildConcurrency
	if n <= 0 {
		n = config.DefaultBuildConcurrency()
	}
	a := &Apps{opts: o, log: o.Logger, names: map[string]*App{}, slots: make(chan struct{}, n)}
	if !o.Set.Multi && len(o.Set.Apps) == 1 {
		claimed, err := o.Store.Deployments().ClaimUnowned(ctx, o.Set.Apps[0].App)
		if err != nil {
			return nil, err
		}
		if claimed > 0 {
			a.log.Info("deployments of an earlier slipway given to the app", "app", o.Set.Apps[0].App, "deployments", claimed)
		}
	}
	for _, cfg := range o.Set.Apps {
		app, err := a.open(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", cfg.App, err)
		}
		a.list = append(a.list, app)
		a.names[cfg.App] = app
	}
	return a, nil
}

// AppDir is where an app keeps its mirror, builds and logs: the data
// directory itself for a single-app configuration (as slipway always did),
// apps/APP in it for each app of several (multi).
func AppDir(dataDir string, multi bool, app string) string {
	if !multi {
		return dataDir
	}
	return filepath.Join(dataDir, "apps", app)
}

// NewBuilder returns cfg's builder and repository mirror, as serve uses
// them: `slipway build` builds with the same mirror and work directories.
func NewBuilder(cfg *config.Config, multi bool, dataDir string, reg *registry.Client, repository string, store *ledger.Store) (*build.Builder, *gitsource.Source) {
	dir := AppDir(dataDir, multi, cfg.App)
	src := gitsource.New(cfg.Repo.URL, filepath.Join(dir, gitsource.MirrorDir))
	return build.New(cfg, src, reg, repository, store, dir), src
}

func (a *Apps) open(ctx context.Context, cfg *config.Config) (*App, error) {
	log := a.log.With("app", cfg.App)
	dir := AppDir(a.opts.DataDir, a.opts.Set.Multi, cfg.App)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	reg := registry.NewClient(registry.Insecure(cfg.Registry.Insecure))
	repository := cfg.ImageRepository(a.opts.RegistryAddr)
	builder, src := NewBuilder(cfg, a.opts.Set.Multi, a.opts.DataDir, reg, repository, a.opts.Store)
	builder.Logger = log.With("component", "build")
	builder.CIRegistry, builder.CIInsecure = ciRegistry(cfg, reg), cfg.Build.Image.Insecure
	interrupted, err := builder.Reconcile(ctx)
	if err != nil {
		return nil, fmt.Errorf("mark builds interrupted by the last stop as failed: %w", err)
	}
	for _, b := range interrupted {
		log.Warn("build interrupted by the last stop: marked failed; its commit is built again when needed", "build", b.ID, "commit", b.Commit)
	}
	backend, err := a.backend(cfg, reg, log)
	if err != nil {
		return nil, err
	}
	deps := a.opts.Store.Deployments().ForApp(cfg.App)
	poll := cfg.PollInterval()
	if a.opts.PollInterval > 0 {
		poll = a.opts.PollInterval
	}
	repo := &GitRepo{Source: src}
	ctl, err := pipeline.New(pipeline.Config{App: cfg.App, Envs: ControllerEnvs(cfg), PollInterval: poll}, pipeline.Deps{
		Repo:     repo,
		Builder:  ImageBuilder{Builder: builder, Slots: a.slots},
		Tagger:   RegistryTagger{Client: reg, Repository: repository},
		Deployer: Runtime{Backend: backend, Config: cfg, Images: reg},
		Smoker:   build.Smoker{Source: src, Config: cfg, Dir: dir},
		Store:    deps,
		Logger:   log.With("component", "controller"),
		OnChange: func() { a.opts.Changes.Publish(cfg.App) },
		Notifier: a.opts.Notifier,
		Holds:    deps.Holds(),
		// The release phase runs through the same runtime as rollouts.
		ReleasePhase: Runtime{Backend: backend, Config: cfg},
	})
	if err != nil {
		return nil, err
	}
	return &App{Config: cfg, Controller: ctl, Source: src, Backend: backend, Registry: reg, Repository: repository,
		repo: repo, store: a.opts.Store, deps: deps, builder: builder, collect: a.collector()}, nil
}

// backend returns cfg's runtime.
func (a *Apps) backend(cfg *config.Config, reg *registry.Client, log *slog.Logger) (Backend, error) {
	if cfg.Runtime == config.RuntimeKubernetes {
		rc, err := kube.RESTConfig(cfg.Kubernetes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return kube.New(rc, kube.Options{Config: cfg, Logger: log.With("component", "runtime")})
	}
	return local.New(local.Options{
		Dir:       filepath.Join(a.opts.DataDir, RuntimeDir, cfg.App),
		App:       cfg.App,
		LegacyDir: filepath.Join(a.opts.DataDir, RuntimeDir),
		Registry:  reg,
		Logger:    log.With("component", "runtime"),
	})
}

// ControllerEnvs turns an app's environments into its controller's.
func ControllerEnvs(cfg *config.Config) []pipeline.Env {
	var envs []pipeline.Env
	for i, e := range cfg.Environments {
		url := e.EnvironmentURL()
		if cfg.Runtime == config.RuntimeKubernetes {
			if u, err := kube.URL(cfg, e.Name); err == nil {
				url = u
			}
		}
		pe := pipeline.Env{
			Name:            e.Name,
			Branch:          e.Branch,
			From:            e.From,
			Automatic:       e.Mode == config.ModeAutomatic,
			URL:             url,
			Replicas:        e.Replicas,
			MinTimeVerified: e.MinTimeVerified,
			Freeze:          cfg.FreezeSchedule(e.Name),
			ReleasePhase:    cfg.ReleasePhase(e).Enabled(),
		}
		if !pe.Automatic {
			pe.RequireVerifiedOn = e.RequireVerifiedOn
			if pe.RequireVerifiedOn == "" && i > 0 {
				pe.RequireVerifiedOn = cfg.Environments[i-1].Name
			}
		}
		if pe.From != "" {
			pe.Branch = ""
		}
		envs = append(envs, pe)
	}
	return envs
}

// Run runs every app's controller until ctx ends, and a watch on each
// repository on this machine that polls as soon as a push changes it.
func (a *Apps) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(a.list))
	for _, app := range a.list {
		wg.Go(func() {
			if err := app.Controller.Run(ctx); err != nil {
				errs <- fmt.Errorf("app %s: %w", app.Config.App, err)
				cancel()
			}
		})
	}
	for _, app := range a.list {
		wg.Go(func() { app.watchImages(ctx) })
		wg.Go(func() { app.collectEvery(ctx) })
	}
	wg.Go(func() { a.watchRefs(ctx) })
	wg.Go(func() { a.keepDORAWarm(ctx) })
	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var out []error
		for err := range errs {
			out = append(out, err)
		}
		return out
	}()...)
}

// StopAll removes every environment's replicas and load balancer (the
// demo's end); data stays.
func (a *Apps) StopAll(ctx context.Context) {
	for _, app := range a.list {
		for _, e := range app.Config.Environments {
			if err := app.Backend.Stop(ctx, e.Name); err != nil && !errors.Is(err, deploy.ErrNotDeployed) {
				a.log.Debug("stop environment", "app", app.Config.App, "env", e.Name, "err", err)
			}
		}
	}
}

// watchRefs makes each app's controller look at its repository as soon as
// a push changes its refs, rather than at the next poll, for the
// repositories on this machine: by the kernel's file notifications, which
// cost nothing while no ref moves; a repository the kernel will not watch
// is looked at by the times of its refs' directories ten times a second,
// in one loop for all.
func (a *Apps) watchRefs(ctx context.Context) {
	var stamped []*App
	rw, err := gitsource.NewRefsWatcher()
	if err != nil {
		a.log.Warn("repositories on this machine are looked at ten times a second instead", "err", err)
	}
	for _, app := range a.list {
		if rw == nil {
			stamped = append(stamped, app)
			continue
		}
		ok, err := rw.Add(app.Source, app.Poll)
		switch {
		case err != nil:
			a.log.Warn("the app's repository is looked at ten times a second instead", "app", app.Config.App, "err", err)
			stamped = append(stamped, app)
		case ok:
			app.repo.watched.Store(true)
			app.Poll() // a push before the watch began is seen too
		}
	}
	var wg sync.WaitGroup
	if rw != nil {
		wg.Go(func() {
			if err := rw.Run(ctx); err != nil {
				a.log.Warn("watching repositories failed: they are fetched at every poll now", "err", err)
				for _, app := range a.list {
					app.repo.watched.Store(false)
				}
			}
		})
	}
	wg.Go(func() { pollRefsStamps(ctx, stamped) })
	wg.Wait()
}

// pollRefsStamps makes apps poll when the stamp of their refs changes,
// looking ten times a second.
func pollRefsStamps(ctx context.Context, apps []*App) {
	last := make([]string, len(apps))
	local := false
	for i, app := range apps {
		stamp, ok, _ := app.Source.RefsStamp()
		last[i], local = stamp, local || ok
	}
	if !local {
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, app := range apps {
			stamp, ok, err := app.Source.RefsStamp()
			if ok && err == nil && stamp != last[i] {
				last[i] = stamp
				app.Controller.Poll()
			}
		}
	}
}

// List returns the apps in configuration order.
func (a *Apps) List() []api.App {
	out := make([]api.App, 0, len(a.list))
	for _, app := range a.list {
		out = append(out, app)
	}
	return out
}

// Get returns the app named name.
func (a *Apps) Get(name string) (api.App, bool) {
	app, ok := a.names[name]
	if !ok {
		return nil, false
	}
	return app, true
}

// All returns the apps in configuration order.
func (a *Apps) All() []*App { return a.list }

// Changes is the hub that hears of every change of the apps' deployments,
// their steps and builds.
func (a *Apps) Changes() *changes.Hub { return a.opts.Changes }

// Name is the app's name.
func (p *App) Name() string { return p.Config.App }

// RepoURL is the app's repository as configured.
func (p *App) RepoURL() string { return p.Config.Repo.URL }

// Environments are the app's environment names, in chain order.
func (p *App) Environments() []string {
	names := make([]string, len(p.Config.Environments))
	for i, e := range p.Config.Environments {
		names[i] = e.Name
	}
	return names
}

// Status reports the app's environments.
func (p *App) Status(ctx context.Context) (pipeline.Status, error) { return p.Controller.Status(ctx) }

// History lists the app's newest deployments.
func (p *App) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	return p.Controller.History(ctx, env, limit)
}

// Diff lists the commits one environment runs and another does not.
func (p *App) Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error) {
	return p.Controller.Diff(ctx, from, to)
}

// RecentCommits lists the newest commits of the app's source branch (the
// branch of its first environment), newest first, at most limit.
func (p *App) RecentCommits(ctx context.Context, limit int) ([]pipeline.Commit, error) {
	branch := ""
	for _, e := range p.Config.Environments {
		if e.Branch != "" {
			branch = e.Branch
			break
		}
	}
	head, err := p.repo.Head(ctx, branch)
	if err != nil || head == "" {
		return nil, err
	}
	return p.repo.Commits(ctx, "", head, limit)
}

// Deployment returns one of the app's deployments.
func (p *App) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	return p.Controller.Deployment(ctx, id)
}

// Steps returns the steps of one of the app's deployments, in the order
// they started: ErrNoDeployment (an ErrNotFound) for a deployment of no
// or another app.
func (p *App) Steps(ctx context.Context, deploymentID int64) ([]ledger.Step, error) {
	return p.Controller.Steps(ctx, deploymentID)
}

// Release starts a release.
func (p *App) Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error) {
	return p.Controller.Release(ctx, req)
}

// Rollback starts a rollback.
func (p *App) Rollback(ctx context.Context, req pipeline.RollbackRequest) (ledger.Deployment, error) {
	return p.Controller.Rollback(ctx, req)
}

// Scale changes an environment's replica count.
func (p *App) Scale(ctx context.Context, env string, replicas int) (ledger.Deployment, error) {
	return p.Controller.Scale(ctx, env, replicas)
}

// Stop stops an environment.
func (p *App) Stop(ctx context.Context, env string) (ledger.Deployment, error) {
	return p.Controller.Stop(ctx, env)
}

// Start starts a stopped environment.
func (p *App) Start(ctx context.Context, env string) (ledger.Deployment, error) {
	return p.Controller.Start(ctx, env)
}

// Logs copies an environment's replica logs to w.
func (p *App) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	if _, ok := p.Config.Environment(env); !ok {
		return fmt.Errorf("logs of %s: %w", env, pipeline.ErrUnknownEnv)
	}
	return p.Backend.Logs(ctx, env, follow, w)
}

// Builds lists the app's builds.
func (p *App) Builds(ctx context.Context, f ledger.BuildFilter) ([]ledger.Build, error) {
	f.App = p.Config.App
	return p.store.ListBuilds(ctx, f)
}

// Poll makes the app fetch its repository and look at it now (a push
// webhook says it changed).
func (p *App) Poll() {
	p.repo.MarkStale()
	p.Controller.Poll()
}

// Pushed starts the environments that track branch on commit, as a push
// webhook announced it, and makes the app look at its repository now.
func (p *App) Pushed(branch, commit string) {
	p.repo.MarkStale()
	p.Controller.Pushed(branch, commit)
}
