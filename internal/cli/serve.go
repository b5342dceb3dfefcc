package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
)

// serveOptions configure one run of the controller.
type serveOptions struct {
	configPath   string
	dataDir      string
	apiAddr      string
	registryAddr string
	logger       *slog.Logger
	// apiListener, when set, is used instead of listening on apiAddr.
	apiListener net.Listener
	// stopEnvironments stops every environment's replicas when the
	// controller stops (the demo); otherwise they keep serving and are
	// adopted at the next start.
	stopEnvironments bool
	// ready is called once the API serves, with the API's base URL.
	ready func(ctx context.Context, ctl *pipeline.Controller, apiURL string)
}

func newServeCommand() *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: watch the repository, deploy dev, release prod, serve the API",
		Long: `Reads slipway.yaml, starts the registry and the runtime, watches the app's
repository (polling) and takes every new commit of master through build, dev,
health and smoke tests; moves of the release branch are checked and rolled out to
prod. Serves the JSON API (docs/api.md) on --api-addr; changes through it need the
token written to DATA_DIR/api-token on first start.

Stopping serve leaves the environments serving; the next start adopts them and
finishes or undoes any rollout that was in flight.`,
		Example: `  slipway serve
  slipway serve --config slipway.yaml --api-addr 127.0.0.1:8400`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.configPath = flagValue(cmd, "config")
			o.dataDir = flagValue(cmd, "data-dir")
			o.registryAddr = flagValue(cmd, "registry-addr")
			o.logger = newLogger(cmd.ErrOrStderr())
			return runServe(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.apiAddr, "api-addr", api.DefaultAddr, "where the JSON API listens")
	return cmd
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// controllerEnvs turns the configuration's environments into the
// controller's.
func controllerEnvs(cfg *config.Config) []pipeline.Env {
	var envs []pipeline.Env
	for _, e := range cfg.Environments {
		url := e.EnvironmentURL()
		if cfg.Runtime == config.RuntimeKubernetes {
			if u, err := kube.URL(cfg, e.Name); err == nil {
				url = u
			}
		}
		envs = append(envs, pipeline.Env{
			Name:            e.Name,
			Branch:          e.Branch,
			Automatic:       e.Mode == config.ModeAutomatic,
			URL:             url,
			Replicas:        e.Replicas,
			MinTimeOnSource: e.MinTimeVerified,
		})
	}
	return envs
}

// runServe wires slipway's parts by hand and runs the controller until ctx
// ends.
func runServe(ctx context.Context, o serveOptions) error {
	if o.configPath == "" {
		o.configPath = config.DefaultFile
	}
	if o.dataDir == "" {
		o.dataDir = defaultDataDir
	}
	if o.registryAddr == "" {
		o.registryAddr = registry.DefaultAddr
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	log := o.logger
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return &UsageError{Err: err}
	}
	if err := cfg.Validate(); err != nil {
		return &UsageError{Err: err}
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}

	store, err := ledger.Open(ctx, filepath.Join(dataDir, ledger.FileName))
	if err != nil {
		return err
	}
	defer store.Close()

	regClient := registry.NewClient(registry.Insecure(cfg.Registry.Insecure))
	repository := cfg.ImageRepository(o.registryAddr)
	if cfg.Registry.Embedded() {
		reg, _, err := registry.Listen(ctx, o.registryAddr, filepath.Join(dataDir, registry.StorageDir), log.With("component", "registry"))
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			reg.Close(sctx)
		}()
	}

	src := gitsource.New(cfg.Repo.URL, filepath.Join(dataDir, gitsource.MirrorDir))
	builder := build.New(cfg, src, regClient, repository, store, dataDir)
	builder.Logger = log.With("component", "build")
	interrupted, err := builder.Reconcile(ctx)
	if err != nil {
		return fmt.Errorf("mark builds interrupted by the last stop as failed: %w", err)
	}
	for _, b := range interrupted {
		log.Warn("build interrupted by the last stop: marked failed; its commit is built again when needed", "build", b.ID, "commit", b.Commit)
	}

	var backend interface {
		deploy.Backend
		deploy.LogSource
	}
	switch cfg.Runtime {
	case config.RuntimeKubernetes:
		rc, err := kube.RESTConfig(cfg.Kubernetes)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("%s: %w", o.configPath, err)}
		}
		backend, err = kube.New(rc, kube.Options{Config: cfg, Logger: log.With("component", "runtime")})
		if err != nil {
			return err
		}
	default:
		lb, err := local.New(local.Options{
			Dir:       filepath.Join(dataDir, runtimeDir, cfg.App),
			App:       cfg.App,
			LegacyDir: filepath.Join(dataDir, runtimeDir),
			Registry:  regClient,
			Logger:    log.With("component", "runtime"),
		})
		if err != nil {
			return err
		}
		backend = lb
	}
	if o.stopEnvironments {
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			for _, e := range cfg.Environments {
				if err := backend.Stop(sctx, e.Name); err != nil && !errors.Is(err, context.Canceled) {
					log.Debug("stop environment", "env", e.Name, "err", err)
				}
			}
			log.Info("environments stopped")
		}()
	}

	ctl, err := pipeline.New(pipeline.Config{Envs: controllerEnvs(cfg), PollInterval: cfg.PollInterval()}, pipeline.Deps{
		Repo:     &pipeline.GitRepo{Source: src},
		Builder:  pipeline.ImageBuilder{Builder: builder},
		Tagger:   pipeline.RegistryTagger{Client: regClient, Repository: repository},
		Deployer: pipeline.Runtime{Backend: backend, Config: cfg},
		Smoker:   pipeline.CommandSmoker{Source: src, Config: cfg, Dir: dataDir},
		Store:    store.Deployments(),
		Logger:   log.With("component", "controller"),
	})
	if err != nil {
		return &UsageError{Err: fmt.Errorf("%s: %w", o.configPath, err)}
	}

	token, err := api.LoadOrCreateToken(dataDir)
	if err != nil {
		return err
	}
	l := o.apiListener
	if l == nil {
		l, err = net.Listen("tcp", o.apiAddr)
		if err != nil {
			return fmt.Errorf("API: listen on %s (is another slipway running? choose another with --api-addr): %w", o.apiAddr, err)
		}
	}
	app := &singleApp{name: cfg.App, repo: cfg.Repo.URL, ctl: ctl, logs: backend, builds: store}
	srv := api.NewServer(app, token, log.With("component", "api"))
	srv.EnableMetrics(func(string) api.DeploymentCounter { return store.Deployments() })
	if name := cfg.Repo.WebhookSecretEnv; name != "" {
		secret := os.Getenv(name)
		if secret == "" {
			l.Close()
			return usageErrorf("%s: repo.webhookSecretEnv names %s, which is empty: set it to the secret the forge signs its webhooks with", o.configPath, name)
		}
		srv.EnableWebhooks(map[string][]byte{cfg.App: []byte(secret)})
		log.Info("push webhooks accepted", "url", "http://"+l.Addr().String()+"/api/v1/webhooks/{github,gitlab,gitea}")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	apiURL := "http://" + l.Addr().String()
	log.Info("controller started", "api", apiURL, "repo", src.URL(), "registry", repository, "data", dataDir)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- ctl.Run(runCtx) }()
	if o.ready != nil {
		go o.ready(runCtx, ctl, apiURL)
	}
	go watchRefs(runCtx, src, ctl)
	select {
	case err = <-runErr:
	case err = <-serveErr:
		cancel()
		<-runErr
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	log.Info("controller stopped")
	return err
}

// watchRefs makes the controller look at a repository on this machine as
// soon as a push changes its refs, rather than at the next poll.
func watchRefs(ctx context.Context, src *gitsource.Source, ctl *pipeline.Controller) {
	last, ok, _ := src.RefsStamp()
	if !ok {
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
		stamp, _, err := src.RefsStamp()
		if err == nil && stamp != last {
			last = stamp
			ctl.Poll()
		}
	}
}

// runtimeDir is the local runtime's directory in the data directory; short,
// because the runtime's unix sockets live below it.
const runtimeDir = "run"
