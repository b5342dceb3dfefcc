package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"example.com/birthday-app/internal/config"
	"example.com/birthday-app/internal/server"
	"example.com/birthday-app/internal/store"
)

// run serves until ctx is cancelled (SIGTERM or SIGINT), then shuts down:
// readiness turns 503, new requests are still accepted for the shutdown
// delay, in-flight requests get the grace period to finish, and the database
// is closed last. stopSignals restores default signal handling once shutdown
// begins, so a second signal ends the process at once.
func run(ctx context.Context, stopSignals func(), args []string, getenv func(string) string, logger *slog.Logger) error {
	if len(args) > 0 && args[0] == "migrate" {
		return migrate(ctx, args[1:], getenv, logger)
	}
	cfg, err := config.Parse(args, getenv, os.Stderr)
	if err != nil {
		return err
	}
	version := buildVersion()

	open := store.Open
	if !cfg.MigrateOnStart {
		open = store.OpenWithoutMigrating
	}
	st, err := open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w (check -database-url or DATABASE_URL, and that the database is reachable and writable)", err)
	}
	defer st.Close()

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another -port or PORT)", cfg.Addr(), err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := server.New(server.Config{
		Store:      st,
		NotFound:   store.ErrNotFound,
		Logger:     logger,
		Location:   cfg.Location(),
		Version:    version,
		Registerer: reg,
		Gatherer:   reg,
	})
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	logger.Info("listening",
		"addr", ln.Addr().String(),
		"database", store.Redact(cfg.DatabaseURL),
		"timeZone", cfg.TimeZone,
		"commit", version.Commit,
		"goVersion", version.GoVersion)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopSignals()
	srv.Drain()
	logger.Info("shutting down: readiness is now 503", "delay", cfg.ShutdownDelay.String(), "grace", cfg.ShutdownGrace.String())
	time.Sleep(cfg.ShutdownDelay)

	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		httpSrv.Close()
		return fmt.Errorf("requests still running after the %s grace period were cut off (raise -shutdown-grace): %w", cfg.ShutdownGrace, err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// migrate applies the database's missing migrations and exits: the
// release phase of a deployment, run once before any replica of the new
// version starts (those start with MIGRATE_ON_START=false).
func migrate(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger) error {
	cfg, err := config.Parse(args, getenv, os.Stderr)
	if err != nil {
		return err
	}
	n, err := store.Migrate(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w (check -database-url or DATABASE_URL, and that the database is reachable and writable)", err)
	}
	logger.Info("database migrated", "database", store.Redact(cfg.DatabaseURL), "migrations", n, "commit", buildVersion().Commit)
	return nil
}

// buildVersion reads the commit the binary was built from out of the build
// information that `go build` records in a git checkout.
func buildVersion() server.Version {
	v := server.Version{Commit: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}
