// Command slipway tests, builds, deploys and releases an application: see
// docs/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"slipway.dev/slipway/internal/cli"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
