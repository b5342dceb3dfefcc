// Package cli is slipway's command line: the root command, its global
// flags, and every subcommand. Each command keeps its inputs in an options
// struct and goes complete → validate → run. Exit codes: 0 success, 1 the
// operation failed, 2 usage or configuration error (see ExitCode).
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/registry"
)

// NewRoot returns the slipway command with all its subcommands.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "slipway",
		Short: "From a git push to a tested image, running on dev and released to prod",
		Long: `slipway tests and builds every commit of an application into an OCI image,
deploys master to dev, releases proven commits to prod without rebuilding, and
rolls back with one command. Configuration is one file, slipway.yaml
(docs/configuration.md); commands and exit codes are in docs/cli.md.`,
		Example: `  slipway validate
  slipway build
  slipway build 3f2a1bc -o json
  slipway logs build 3f2a1bc`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q: see slipway --help", args[0])
			}
			return cmd.Help()
		},
	}
	pf := root.PersistentFlags()
	pf.String("config", config.DefaultFile, "the configuration file")
	pf.String("data-dir", defaultDataDir, "slipway's data directory (ledger, repository mirror, registry, logs)")
	pf.String("registry-addr", registry.DefaultAddr, "where the embedded registry listens")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })

	root.AddCommand(
		newBuildCommand(),
		newValidateCommand(),
		newLogsCommand(),
		newRenderCommand(),
		newServeCommand(),
		newDemoCommand(),
		newStatusCommand(),
		newReleaseCommand(),
		newRollbackCommand(),
		newHistoryCommand(),
		newDiffCommand(),
		newScaleCommand(),
		newStopCommand(),
		newStartCommand(),
		newRemoveCommand(),
		newDORACommand(),
		newNotificationsCommand(),
		newLockCommand(),
		newUnlockCommand(),
		newUnpinCommand(),
		newLocksCommand(),
		newGCCommand(),
	)
	usageArgs(root)
	return root
}

// usageArgs makes every command's argument errors usage errors (exit 2).
func usageArgs(cmd *cobra.Command) {
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				if _, ok := err.(*UsageError); ok {
					return err
				}
				return &UsageError{Err: fmt.Errorf("%s: %w", c.CommandPath(), err)}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		usageArgs(c)
	}
}

// Main runs slipway with args and returns the process's exit code. Errors
// are printed on stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "slipway: %v\n", err)
	}
	return ExitCode(err)
}

// cliLogger is the logger of a one-shot command: warnings and errors on
// w, as text on a terminal and as JSON otherwise.
func cliLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelWarn}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, opts))
		}
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// outputFlag is the -o flag of every command that prints data.
type outputFlag struct {
	format string
	// formats are the formats the command prints, the first the default;
	// nil means text and json.
	formats []string
}

func (o *outputFlag) allowed() []string {
	if o.formats == nil {
		return []string{"text", "json"}
	}
	return o.formats
}

func (o *outputFlag) register(cmd *cobra.Command) {
	f := o.allowed()
	cmd.Flags().StringVarP(&o.format, "output", "o", f[0], "output format: "+strings.Join(f, " or "))
}

func (o *outputFlag) validate() error {
	if slices.Contains(o.allowed(), o.format) {
		return nil
	}
	return usageErrorf("--output %q: use %s", o.format, strings.Join(o.allowed(), " or "))
}

func (o *outputFlag) json() bool { return o.format == "json" }
