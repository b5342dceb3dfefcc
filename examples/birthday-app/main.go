// Command birthday-app serves the birthday API: PUT /hello/<username> saves a
// date of birth, GET /hello/<username> says how long until the birthday.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // time zones work on an empty base image
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	err := run(ctx, stop, os.Args[1:], os.Getenv, logger)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		logger.Error("birthday-app stopped", "error", err.Error())
		os.Exit(1)
	}
}
