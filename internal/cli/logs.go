package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

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
		Use:   "logs (ENV | build COMMIT)",
		Short: "Show an environment's logs or a build's output",
		Long: "`slipway logs ENV` prints the output of the environment's replicas, each line\nprefixed by its replica; -f keeps following it.\n\n" +
			"`slipway logs build COMMIT` prints the full output of the newest build of COMMIT\n(its tests and go build), as kept in the data directory.",
		Example: `  slipway logs prod
  slipway logs dev -f --app web
  slipway logs build 3f2a1bc
  slipway logs build 3f2a1bc -o json`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd)
			if len(args) != 1 {
				return usageErrorf("logs: name an environment (slipway logs dev) or a build (slipway logs build COMMIT)")
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
	dataDir string
	commit  string
	output  outputFlag
}

func newLogsBuildCommand() *cobra.Command {
	o := &logsBuildOptions{}
	cmd := &cobra.Command{
		Use:   "build COMMIT",
		Short: "Print the output of a commit's newest build",
		Long: `Prints the log of the newest build of COMMIT (a commit hash or a prefix of at
least 4 hex digits): the test command's full output and go build's. A build that
did no work (the image existed) or failed before testing has no log: its state
and reason are printed instead.`,
		Example: `  slipway logs build 3f2a1bc
  slipway logs build 3f2a1bc5e0635d845ce5ada65d89507b7b829324 --data-dir /var/lib/slipway
  slipway logs build 3f2a1bc -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd, args)
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.output.register(cmd)
	return cmd
}

func (o *logsBuildOptions) complete(cmd *cobra.Command, args []string) {
	o.dataDir = flagValue(cmd, "data-dir")
	o.commit = args[0]
}

func (o *logsBuildOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if len(o.commit) < 4 {
		return usageErrorf("commit %q: give a commit hash or at least its first 4 hex digits", o.commit)
	}
	for _, r := range o.commit {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return usageErrorf("commit %q: give a commit hash (hex digits), as printed by slipway build or git log", o.commit)
		}
	}
	return nil
}

// logsBuildOutput is the JSON `slipway logs build -o json` prints.
type logsBuildOutput struct {
	Build ledger.Build `json:"build"`
	Log   string       `json:"log"`
}

func (o *logsBuildOptions) run(ctx context.Context, stdout io.Writer) error {
	path := filepath.Join(o.dataDir, ledger.FileName)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no builds recorded in %s: run slipway build first, or point --data-dir at slipway's data directory", o.dataDir)
	}
	store, err := ledger.Open(ctx, path)
	if err != nil {
		return err
	}
	defer store.Close()
	b, err := store.LatestBuild(ctx, o.commit)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("%w (slipway build %s builds it)", err, o.commit)
		}
		return err
	}
	var log []byte
	if b.LogPath != "" {
		if log, err = os.ReadFile(b.LogPath); err != nil {
			return fmt.Errorf("build %d of %s: read its log: %w", b.ID, b.Commit, err)
		}
	}
	if o.output.json() {
		return writeJSONTo(stdout, logsBuildOutput{Build: b, Log: string(log)})
	}
	if log == nil {
		fmt.Fprintf(stdout, "build %d of %s: %s, no log: %s\n", b.ID, b.Commit, b.State, b.Reason)
		return nil
	}
	_, err = stdout.Write(log)
	return err
}
