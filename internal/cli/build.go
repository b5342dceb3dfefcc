package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/apps"
	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

// buildOptions are the inputs of `slipway build`.
type buildOptions struct {
	configPath   string
	dataDir      string
	registryAddr string
	output       outputFlag
	rev          string
	app          string

	set *config.Set
	cfg *config.Config
}

func newBuildCommand() *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [COMMIT]",
		Short: "Test a commit, build its image and push it to the registry",
		Long: `Fetches the app's repository into the data directory, checks out COMMIT (a
commit hash, branch or tag; default: the head of master), runs the test command
there, builds a static Go binary into an OCI image on slipway's own minimal base,
pushes it and tags it sha-<commit>, <short commit> and latest.

Prints the image's digest reference (REGISTRY/APP@sha256:…) on stdout; progress
goes to stderr. A commit that already has an image is not tested or built again.
With the embedded registry (registry.ref empty), build serves it on
--registry-addr for its own run, or uses the one already listening there.`,
		Example: `  slipway build
  slipway build 3f2a1bc
  slipway build release -o json
  slipway build --config ../slipway.yaml --data-dir /var/lib/slipway`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(cmd, args); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.output.register(cmd)
	cmd.Flags().StringVarP(&o.app, "app", "a", "", "the app to build (with a configuration of several)")
	return cmd
}

// loadAppConfig reads and validates the configuration and returns it with
// the configuration of app: the one named, or the only one; a mistake is a
// usage error (exit 2).
func loadAppConfig(path, app string) (*config.Set, *config.Config, error) {
	set, err := config.LoadSet(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, usageErrorf("%s does not exist: write one (docs/configuration.md) or name it with --config", path)
		}
		return nil, nil, &UsageError{Err: err}
	}
	if app == "" {
		if len(set.Apps) > 1 {
			return nil, nil, usageErrorf("%s configures the apps %s: name one with --app", path, strings.Join(set.Names(), ", "))
		}
		return set, set.Apps[0], nil
	}
	cfg, ok := set.App(app)
	if !ok {
		return nil, nil, usageErrorf("--app %s: %s configures %s", app, path, strings.Join(set.Names(), ", "))
	}
	return set, cfg, nil
}

func (o *buildOptions) complete(cmd *cobra.Command, args []string) error {
	o.configPath = flagValue(cmd, "config")
	o.dataDir = flagValue(cmd, "data-dir")
	o.registryAddr = flagValue(cmd, "registry-addr")
	o.rev = "master"
	if len(args) == 1 {
		o.rev = args[0]
	}
	set, cfg, err := loadAppConfig(o.configPath, o.app)
	if err != nil {
		return err
	}
	o.set, o.cfg = set, cfg
	return nil
}

func (o *buildOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.dataDir == "" {
		return usageErrorf("--data-dir is empty: give slipway's data directory")
	}
	if _, _, err := net.SplitHostPort(o.registryAddr); err != nil {
		return usageErrorf("--registry-addr %q: want host:port, such as 127.0.0.1:5000", o.registryAddr)
	}
	if o.cfg.Build.ImagesFromCI() {
		return usageErrorf("%s takes its images from CI (build.kind: image): slipway does not build it; push an image labelled with its commit and POST it to /api/v1/apps/%s/builds, or let build.image.watch find it", o.cfg.App, o.cfg.App)
	}
	return nil
}

// buildOutput is the JSON `slipway build -o json` prints.
type buildOutput struct {
	Reference string       `json:"reference,omitempty"` // REPOSITORY@sha256:…
	Commit    string       `json:"commit"`
	Digest    string       `json:"digest,omitempty"`
	Skipped   bool         `json:"skipped"` // already built: nothing was done
	Build     ledger.Build `json:"build"`
}

func (o *buildOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	logger := cliLogger(stderr)
	store, err := ledger.Open(ctx, filepath.Join(dataDir, ledger.FileName))
	if err != nil {
		return err
	}
	defer store.Close()

	client := registry.NewClient(registry.Insecure(o.cfg.Registry.Insecure))
	repository := o.cfg.ImageRepository(o.registryAddr)
	if o.cfg.Registry.Embedded() {
		addr, stop, err := useEmbeddedRegistry(ctx, o.registryAddr, dataDir, logger, stderr)
		if err != nil {
			return err
		}
		defer stop()
		repository = o.cfg.ImageRepository(addr)
	}
	defer client.Close() // before stop: the registry need not wait for idle connections

	b, _ := apps.NewBuilder(o.cfg, o.set.Multi, dataDir, client, repository, store)
	defer b.Wait() // a Dockerfile build's storage is tidied before the command ends
	b.Progress = stderr
	b.Logger = logger
	res, err := b.Run(ctx, build.Request{Rev: o.rev, Trigger: "cli"})
	if o.output.json() && res.Build.ID != 0 {
		out := buildOutput{Reference: res.Reference(), Commit: res.Build.Commit, Digest: res.Build.Digest, Skipped: res.Skipped, Build: res.Build}
		if jerr := writeJSONTo(stdout, out); jerr != nil && err == nil {
			err = jerr
		}
	} else if err == nil {
		fmt.Fprintln(stdout, res.Reference())
	}
	if err != nil {
		return fmt.Errorf("build %s: %w", o.rev, err)
	}
	return nil
}

// useEmbeddedRegistry serves the embedded registry on addr for this
// command, or uses the one already there (slipway serve's). It returns the
// address to push to and how to stop what it started.
func useEmbeddedRegistry(ctx context.Context, addr, dataDir string, logger *slog.Logger, progress io.Writer) (string, func(), error) {
	reg, l, err := registry.Listen(ctx, addr, filepath.Join(dataDir, registry.StorageDir), logger)
	if err != nil {
		if registryAnswers(ctx, addr) {
			fmt.Fprintf(progress, "using the registry already listening on %s\n", addr)
			return addr, func() {}, nil
		}
		return "", nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := reg.Close(sctx); err != nil {
			logger.Warn("stop embedded registry", "err", err)
		}
	}
	return l.Addr().String(), stop, nil
}

// registryAnswers reports whether an OCI registry answers on addr.
func registryAnswers(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
}
