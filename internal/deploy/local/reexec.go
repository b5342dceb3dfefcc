package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"slipway.dev/slipway/internal/crashpoint"
)

// The local backend runs parts of itself as processes of their own, by
// starting this program again with one of these variables set. Both are
// removed from the environment before anything else runs.
const (
	// envSupervisor holds the environment directory of a supervisor.
	envSupervisor = "SLIPWAY_LOCAL_SUPERVISOR"
	// envSandbox marks the first stage of a replica's sandbox, which reads
	// its sandboxConfig from a pipe (configFD).
	envSandbox = "SLIPWAY_LOCAL_SANDBOX"
	// envConfine holds the JSON confineConfig of a replica's second
	// sandbox stage, inside its user namespace.
	envConfine = "SLIPWAY_LOCAL_CONFINE"
	// envNoSandbox=1 tells a supervisor to run replicas as plain processes.
	envNoSandbox = "SLIPWAY_LOCAL_NO_SANDBOX"
)

// SupervisorCommand is the argument the backend starts this program with
// to run an environment's supervisor; it only makes `ps` readable; the
// environment variable decides.
const SupervisorCommand = "local-supervisor"

// supervisorMemoryLimit is the soft memory limit of a supervisor process:
// room for the default 10,000 connections (about 100 MiB), with the rest
// for requests in flight.
const supervisorMemoryLimit = 256 << 20

// SupervisorMain runs the parts of the local backend that live in processes
// of their own, when this process was started as one of them: an
// environment's supervisor (its load balancer and replicas), or a replica's
// sandbox setup. It then exits the process. Otherwise it returns at once.
//
// Call it first thing in main, and in TestMain of every package whose tests
// use the local backend (the test binary is started again in its place).
func SupervisorMain() {
	if cfg, ok := os.LookupEnv(envConfine); ok {
		os.Unsetenv(envConfine)
		runConfined(cfg) // does not return
	}
	if _, ok := os.LookupEnv(envSandbox); ok {
		os.Unsetenv(envSandbox)
		runSandbox() // does not return
	}
	dir, ok := os.LookupEnv(envSupervisor)
	if !ok {
		return
	}
	os.Unsetenv(envSupervisor)
	crashpoint.SetScope(filepath.Base(dir)) // the environment
	if os.Getenv("GOGC") == "" {
		// The load balancer allocates per request and the heap is small:
		// collect less often, for throughput and tail latency.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Collecting less often must not let garbage (oversized request
		// heads that were refused, say) grow the process without bound:
		// past this the collector runs sooner, and freed memory goes
		// back to the system.
		debug.SetMemoryLimit(supervisorMemoryLimit)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("component", "local-supervisor")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := runSupervisor(ctx, dir, logger); err != nil {
		fmt.Fprintf(os.Stderr, "slipway local supervisor for %s: %v\n", dir, err)
		os.Exit(1)
	}
	os.Exit(0)
}
