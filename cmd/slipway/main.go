// Command slipway tests, builds, deploys and releases an application: see
// docs/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"slipway.dev/slipway/internal/cli"
	"slipway.dev/slipway/internal/deploy/local"
)

func main() {
	// The local runtime starts this program again as an environment's
	// supervisor; in that case this call runs it and exits.
	local.SupervisorMain()
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
