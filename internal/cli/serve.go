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
	"slipway.dev/slipway/internal/apps"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/notify"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/web"
)

// serveOptions configure one run of the controller.
type serveOptions struct {
	configPath   string
	dataDir      string
	apiAddr      string
	registryAddr string
	// plainWrites lets other machines make changes over plain HTTP.
	plainWrites bool
	logger      *slog.Logger
	// apiListener, when set, is used instead of listening on apiAddr.
	apiListener net.Listener
	// stopEnvironments stops every environment's replicas when the
	// controller stops (the demo); otherwise they keep serving and are
	// adopted at the next start.
	stopEnvironments bool
	// ready is called once the API serves, with the API's base URL.
	ready func(ctx context.Context, all *apps.Apps, apiURL string)
}

func newServeCommand() *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: watch the repository, deploy dev, release prod, serve the API",
		Long: `Reads slipway.yaml, starts the registry and the runtime, watches the app's
repository (polling) and takes every new commit of master through build, dev,
health and smoke tests; moves of the release branch are checked and rolled out to
prod. Serves the JSON API (docs/api.md) on --api-addr, and the dashboard at its
root (http://127.0.0.1:8400/, docs/dashboard.md); changes through either need the
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
	cmd.Flags().StringVar(&o.apiAddr, "api-addr", api.DefaultAddr, "where the JSON API listens (loopback by default; another address lets other machines read with the token)")
	cmd.Flags().BoolVar(&o.plainWrites, "api-allow-plain-writes", false, "let other machines make changes over plain HTTP, which sends the token in clear (by default only this machine and TLS connections may)")
	return cmd
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// runServe wires every app of the configuration and runs their
// controllers and the API until ctx ends.
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
	set, err := config.LoadSet(o.configPath)
	if err != nil {
		return &UsageError{Err: err}
	}
	if err := set.Validate(); err != nil {
		return &UsageError{Err: err}
	}
	secrets := map[string][]byte{}
	for _, cfg := range set.Apps {
		if name := cfg.Repo.WebhookSecretEnv; name != "" {
			secret := os.Getenv(name)
			if secret == "" {
				return usageErrorf("%s: app %s: repo.webhookSecretEnv names %s, which is empty: set it to the secret the forge signs its webhooks with", o.configPath, cfg.App, name)
			}
			secrets[cfg.App] = []byte(secret)
		}
	}
	if err := checkNotificationSecrets(o.configPath, set); err != nil {
		return err
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

	var embedded *registry.Embedded // swept by the image collection
	for _, cfg := range set.Apps {
		if !cfg.Registry.Embedded() {
			continue
		}
		reg, _, err := registry.Listen(ctx, o.registryAddr, filepath.Join(dataDir, registry.StorageDir), log.With("component", "registry"))
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			reg.Close(sctx)
		}()
		embedded = reg
		break
	}

	outbox := notify.NewOutbox(store, notifyDestinations(set))
	all, err := apps.Open(ctx, apps.Options{Set: set, DataDir: dataDir, RegistryAddr: o.registryAddr, Store: store, Logger: log, Notifier: outbox, Embedded: embedded})
	if err != nil {
		if errors.Is(err, apps.ErrConfig) {
			return &UsageError{Err: fmt.Errorf("%s: %w", o.configPath, err)}
		}
		return err
	}
	if o.stopEnvironments {
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			all.StopAll(sctx)
			log.Info("environments stopped")
		}()
	}
	all.ReportLeftovers(ctx)

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
	srv := api.NewServer(all, token, log.With("component", "api"))
	srv.EnableMetrics(func(app string) api.DeploymentCounter { return store.Deployments().ForApp(app) })
	srv.EnableNotifications(store)
	if o.plainWrites {
		srv.AllowPlainWrites()
	}
	if tcp, ok := l.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		changes := "only through a TLS proxy"
		if o.plainWrites {
			changes = "over plain HTTP too (--api-allow-plain-writes): the token travels in clear"
		}
		log.Warn("the API listens beyond this machine: other machines read with the token, and make changes "+changes, "addr", l.Addr().String())
	}
	if len(secrets) > 0 {
		srv.EnableWebhooks(secrets)
		log.Info("push webhooks accepted", "url", "http://"+l.Addr().String()+"/api/v1/webhooks/{github,gitlab,gitea}")
	}
	dash, err := web.New(web.Options{
		Apps: all, Token: token, Logger: log.With("component", "web"),
		Subscribe:        func() web.Subscription { return all.Changes().Subscribe() },
		AllowPlainWrites: o.plainWrites,
		DORA: func(ctx context.Context, app string, since time.Duration) (any, error) {
			return api.DORAReport(ctx, all, app, since)
		},
	})
	if err != nil {
		return err
	}
	srv.Handle("/", dash)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	apiURL := "http://" + l.Addr().String()
	for _, app := range all.All() {
		log.Info("app", "app", app.Config.App, "repo", app.Source.URL(), "registry", app.Repository)
	}
	log.Info("controller started", "api", apiURL, "dashboard", apiURL+"/", "apps", len(set.Apps), "data", dataDir)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- all.Run(runCtx) }()
	notifyDone := runDeliverer(runCtx, store, outbox, log)
	defer func() { cancel(); <-notifyDone }() // before the ledger closes
	if o.ready != nil {
		go o.ready(runCtx, all, apiURL)
	}
	select {
	case err = <-runErr:
	case err = <-serveErr:
		cancel()
		<-runErr
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	dash.Close() // ends the dashboard's open streams, which Shutdown would wait for
	srv.Shutdown(sctx)
	log.Info("controller stopped")
	return err
}

// The dashboard names the commits of each app's source branch.
var _ web.CommitLister = (*apps.App)(nil)
