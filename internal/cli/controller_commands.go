package cli

import (
	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/registry"
)

// AddControllerCommands adds the commands that run the controller (serve,
// demo) and talk to it (status, release, rollback, history, diff, scale,
// logs ENV) to root.
func AddControllerCommands(root *cobra.Command) {
	serve := newServeCommand()
	// serve needs these; the root usually defines them for every command.
	for _, f := range []struct{ name, def, usage string }{
		{"config", config.DefaultFile, "the configuration file"},
		{"data-dir", defaultDataDir, "slipway's data directory"},
		{"registry-addr", registry.DefaultAddr, "where the embedded registry listens"},
	} {
		if root.PersistentFlags().Lookup(f.name) == nil {
			serve.Flags().String(f.name, f.def, f.usage)
		}
	}
	root.AddCommand(
		serve,
		newDemoCommand(),
		newStatusCommand(),
		newReleaseCommand(),
		newRollbackCommand(),
		newHistoryCommand(),
		newDiffCommand(),
		newScaleCommand(),
	)
	addEnvLogs(root)
}
