package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/apps"
	"slipway.dev/slipway/internal/ledger"
)

// envLogsOptions are the inputs of `slipway logs ENV`.
type envLogsOptions struct {
	clientOptions
	env    string
	follow bool
}

// newLogsCommand is `slipway logs ENV`, with the `build COMMIT` subcommand.
func newLogsCommand() *cobra.Command {
	o := &envLogsOptions{}
	logs := &cobra.Command{
		Use:   "logs (ENV | build [COMMIT])",
		Short: "Show an environment's logs or a build's output",
		Long: "`slipway logs ENV` prints the output of the environment's replicas, each line\nprefixed by its replica; -f keeps following it.\n\n" +
			"`slipway logs build [COMMIT]` prints the full output of the newest build of COMMIT\n(default: the newest build), its steps with their durations; -f follows it while\nit runs.",
		Example: `  slipway logs prod
  slipway logs dev -f --app web
  slipway logs build -f
  slipway logs build 3f2a1bc -o json`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd)
			if len(args) != 1 {
				return usageErrorf("logs: name an environment (slipway logs dev) or a build (slipway logs build [COMMIT])")
			}
			o.env = args[0]
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(logs)
	logs.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing new lines")
	logs.AddCommand(newLogsBuildCommand())
	return logs
}

func (o *envLogsOptions) run(ctx context.Context, stdout io.Writer) error {
	if err := o.resolveApp(ctx, "slipway logs --app APP "+o.env); err != nil {
		return err
	}
	return o.client.Logs(ctx, o.app, o.env, o.follow, stdout)
}

// logsBuildOptions are the inputs of `slipway logs build`.
type logsBuildOptions struct {
	clientOptions
	commit string
	follow bool
	output outputFlag
}

func newLogsBuildCommand() *cobra.Command {
	o := &logsBuildOptions{}
	cmd := &cobra.Command{
		Use:   "build [COMMIT]",
		Short: "Print a build's output, or follow it while it runs",
		Long: `Prints the log of the newest build of COMMIT (a commit hash or its first 7 hex
digits or more; default: the app's newest build, of any commit): each step with
its duration (fetching modules, testing, building, making the image, pushing),
the test command's full output and go build's. With -f it keeps printing while
the build runs and ends when the build does.

It asks the controller (--server); when none answers, it reads the data
directory (--data-dir), where slipway build keeps its builds. A build that did
no work (the image existed) or failed before testing has no log: its state and
reason are printed instead.`,
		Example: `  slipway logs build
  slipway logs build -f
  slipway logs build 3f2a1bc --app web
  slipway logs build 3f2a1bc -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd, args)
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.server, "server", defaultServer(), "the controller's URL (env "+envServer+")")
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing while the build runs; end when it ends")
	o.output.register(cmd)
	return cmd
}

func (o *logsBuildOptions) complete(cmd *cobra.Command, args []string) {
	o.clientOptions.complete(cmd)
	o.app = flagValue(cmd, "app")
	o.commit = api.LatestBuild
	if len(args) == 1 {
		o.commit = strings.ToLower(args[0])
	}
}

func (o *logsBuildOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.follow && o.output.json() {
		return usageErrorf("-o json prints the whole log once the build is over: leave out -f, or -o json")
	}
	if err := api.ValidBuildCommit(o.commit); err != nil {
		return &UsageError{Err: err}
	}
	return nil
}

// logsBuildOutput is the JSON `slipway logs build -o json` prints.
type logsBuildOutput struct {
	Build ledger.Build `json:"build"`
	Log   string       `json:"log"`
}

func (o *logsBuildOptions) run(ctx context.Context, stdout io.Writer) error {
	err := o.runRemote(ctx, stdout)
	if errors.Is(err, api.ErrUnreachable) {
		return o.runLocal(ctx, stdout, err)
	}
	return err
}

// runRemote asks the controller.
func (o *logsBuildOptions) runRemote(ctx context.Context, stdout io.Writer) error {
	if err := o.resolveApp(ctx, "slipway logs build --app APP"); err != nil {
		return err
	}
	if !o.output.json() {
		return o.client.BuildLog(ctx, o.app, o.commit, o.follow, stdout)
	}
	var log strings.Builder
	if err := o.client.BuildLog(ctx, o.app, o.commit, false, &log); err != nil {
		return err
	}
	list, err := o.client.Builds(ctx, o.app, 10000)
	if err != nil {
		return err
	}
	for _, b := range list {
		if o.commit == api.LatestBuild || strings.HasPrefix(b.Commit, o.commit) {
			return writeJSONTo(stdout, logsBuildOutput{Build: b, Log: log.String()})
		}
	}
	return fmt.Errorf("build of %s: not among the app's newest 10000 builds", o.commit)
}

// runLocal reads the builds of the data directory, when no controller
// answers (unreachable says so).
func (o *logsBuildOptions) runLocal(ctx context.Context, stdout io.Writer, unreachable error) error {
	path := filepath.Join(o.dataDir, ledger.FileName)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w; and no builds are recorded in %s: run slipway build first, or point --data-dir at slipway's data directory", unreachable, o.dataDir)
	}
	store, err := ledger.Open(ctx, path)
	if err != nil {
		return err
	}
	defer store.Close()
	if !o.output.json() {
		return notFoundHint(apps.CopyBuildLog(ctx, store, o.app, o.commit, o.follow, stdout), o.commit)
	}
	b, err := apps.FindBuild(ctx, store, o.app, o.commit)
	if err != nil {
		return notFoundHint(err, o.commit)
	}
	var log []byte
	if b.LogPath != "" {
		if log, err = os.ReadFile(b.LogPath); err != nil {
			return fmt.Errorf("build %d of %s: read its log: %w", b.ID, b.Commit, err)
		}
	}
	return writeJSONTo(stdout, logsBuildOutput{Build: b, Log: string(log)})
}

// notFoundHint says what to do about a build the data directory does not
// have; a prefix of several commits is a usage error, as through the API.
func notFoundHint(err error, commit string) error {
	switch {
	case errors.Is(err, ledger.ErrNotFound) && commit != api.LatestBuild:
		return fmt.Errorf("%w (slipway build %s builds it)", err, commit)
	case errors.Is(err, ledger.ErrAmbiguous):
		return &UsageError{Err: err}
	}
	return err
}
