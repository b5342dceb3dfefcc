// Package local is slipway's default runtime: each environment is a set of
// replicas of one image, run on this machine from the image's own files,
// behind the environment's own HTTP load balancer.
//
// Every environment has a supervisor: a process of its own, started from
// this program (see SupervisorMain), that owns the environment's load
// balancer and replicas. The controller (Backend) tells it what to run
// through a unix socket in the environment's directory. Because supervisors
// outlive the controller, restarting slipway drops no request: a new
// Backend talks to the supervisors that still run as to its own. The
// desired state is the controller's (the ledger's): an environment whose
// supervisor is gone reports deploy.ErrNotDeployed, and the controller
// applies it again.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/registry"
)

// Options configure a Backend.
type Options struct {
	// Dir holds the unpacked images (images/) and one directory per
	// environment (envs/NAME: its data, replica logs, supervisor socket).
	// A backend runs the environments of one app: slipway gives each app
	// DATA/run/APP.
	Dir string
	// App is the application whose environments this backend runs; it
	// is needed with LegacyDir.
	App string
	// LegacyDir is where an older slipway, which ran one app, put every
	// environment (DATA/run, each in envs/NAME). An environment there
	// whose supervisor serves App, or last served it when none runs (its
	// serving.json), is run where it is, by that supervisor: its data
	// stays, and no second supervisor is started on its address. Empty:
	// none.
	LegacyDir string
	// Registry pulls the images: its credentials, retries and insecure
	// setting apply. Default: registry.NewClient() (Docker's credentials,
	// TLS verified except on localhost).
	Registry *registry.Client
	// Executable is the program started as supervisor; it must call
	// SupervisorMain first. Default: this program.
	Executable string
	// Logger gets the backend's own events; default: discarded.
	Logger *slog.Logger
	// NoSandbox runs replicas as plain processes even where namespaces
	// and chroot are available.
	NoSandbox bool
}

// Backend runs environments on this machine.
type Backend struct {
	dir       string
	app       string
	legacy    string // "" when there is none
	images    *unpacker
	exe       string
	logger    *slog.Logger
	noSandbox bool

	locks keyedLocks // per environment

	// imagesInUse counts the rollouts using each image digest; PruneImages
	// (gc.go) leaves those, under imagesMu.
	imagesMu    sync.Mutex
	imagesInUse map[string]int
}

var (
	_ deploy.Backend   = (*Backend)(nil)
	_ deploy.LogSource = (*Backend)(nil)
)

// New returns a local Backend.
func New(opts Options) (*Backend, error) {
	if opts.Dir == "" {
		return nil, errors.New("local runtime: no data directory given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	var legacy string
	if opts.LegacyDir != "" {
		if opts.App == "" {
			return nil, errors.New("local runtime: a legacy directory is given without the app whose environments to take from it: set App")
		}
		if legacy, err = filepath.Abs(opts.LegacyDir); err != nil {
			return nil, err
		}
		if legacy == dir {
			legacy = ""
		}
	}
	exe := opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("local runtime: find own executable: %w", err)
		}
	}
	reg := opts.Registry
	if reg == nil {
		reg = registry.NewClient()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(dir, "envs"), 0o755); err != nil {
		return nil, fmt.Errorf("local runtime: %w", err)
	}
	return &Backend{
		dir:       dir,
		app:       opts.App,
		legacy:    legacy,
		images:    &unpacker{dir: filepath.Join(dir, "images"), reg: reg},
		exe:       exe,
		logger:    logger,
		noSandbox: opts.NoSandbox,
	}, nil
}

// ownDir is the directory of env under the backend's own directory.
func (b *Backend) ownDir(env string) string { return filepath.Join(b.dir, "envs", env) }

// envDir returns the directory env runs in: its own one, unless an older
// slipway started env in the legacy directory for this app (see
// Options.LegacyDir). A supervisor answering in its own directory wins.
func (b *Backend) envDir(ctx context.Context, env string) string {
	own := b.ownDir(env)
	if b.legacy == "" {
		return own
	}
	if c, err := dialSocket(ctx, filepath.Join(own, socketName)); err == nil {
		c.Close()
		return own
	}
	if old := filepath.Join(b.legacy, "envs", env); b.ownsLegacy(ctx, old) {
		return old
	}
	return own
}

// ownsLegacy reports whether the environment directory dir, which an older
// slipway made, is this backend's app's: its supervisor serves the app or,
// when none runs or it serves nothing, the spec it last served
// (serving.json) names the app.
func (b *Backend) ownsLegacy(ctx context.Context, dir string) bool {
	if _, err := os.Stat(dir); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var spec deploy.Spec
	if err := newControl(dir).do(ctx, "GET", "/spec", nil, &spec); err == nil {
		return spec.App == b.app
	}
	raw, err := os.ReadFile(filepath.Join(dir, "serving.json"))
	if err != nil || json.Unmarshal(raw, &spec) != nil {
		return false
	}
	return spec.App == b.app
}

// lock serializes the changes to one environment.
func (b *Backend) lock(env string) func() { return b.locks.lock(env) }

// keyedLocks holds a mutex per key (an environment, an image digest).
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// lock locks key's mutex and returns its unlock.
func (k *keyedLocks) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*sync.Mutex{}
	}
	l := k.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		k.locks[key] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Apply brings the environment to spec: see deploy.Backend.
func (b *Backend) Apply(ctx context.Context, spec deploy.Spec) error {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return err
	}
	if spec.ListenAddr == "" {
		spec.ListenAddr = "127.0.0.1:0"
	}
	defer b.lock(spec.Environment)()
	return b.apply(ctx, b.envDir(ctx, spec.Environment), spec)
}

// apply rolls spec out in the environment directory dir.
func (b *Backend) apply(ctx context.Context, dir string, spec deploy.Spec) error {
	sent, err := b.rollOut(ctx, dir, spec)
	if err == nil || !sent {
		return err
	}
	var re *deploy.RolloutError
	if !errors.As(err, &re) && ctx.Err() != nil {
		// The caller gave up waiting, but the supervisor goes on with the
		// rollout.
		return err
	}
	// A supervisor started for this rollout that serves nothing is not
	// left holding the environment's address.
	ctx = context.WithoutCancel(ctx)
	ctl := newControl(dir)
	if serr := ctl.do(ctx, "GET", "/spec", nil, nil); errors.Is(serr, deploy.ErrNotDeployed) {
		ctl.do(ctx, "POST", "/stop", nil, nil)
	}
	return err
}

// rollOut unpacks the image and has the supervisor roll it out; sent
// reports whether the supervisor got the request.
func (b *Backend) rollOut(ctx context.Context, dir string, spec deploy.Spec) (sent bool, err error) {
	secrets, err := readSecrets(spec)
	if err != nil {
		return false, fmt.Errorf("deploy %s to %s: %w", spec.Version, spec.Environment, err)
	}
	defer b.useImage(spec.Image)()
	img, err := b.images.unpack(ctx, spec.Image)
	if err != nil {
		return false, fmt.Errorf("deploy %s to %s: %w", spec.Version, spec.Environment, err)
	}
	ctl, err := b.supervisor(ctx, dir, spec)
	if err != nil {
		return false, fmt.Errorf("deploy %s to %s: %w", spec.Version, spec.Environment, err)
	}
	spec, err = b.resolve(ctx, ctl, dir, spec)
	if err != nil {
		return false, fmt.Errorf("deploy %s to %s: %w", spec.Version, spec.Environment, err)
	}
	stopWatch := watchRollout(ctx, ctl, spec, rolloutWatchEvery)
	err = ctl.do(ctx, "POST", "/apply", applyRequest{Spec: spec, Image: img, Secrets: secrets}, nil)
	stopWatch()
	if err != nil {
		var re *deploy.RolloutError
		if errors.As(err, &re) {
			return true, re
		}
		return true, fmt.Errorf("deploy %s to %s: %w", spec.Version, spec.Environment, err)
	}
	var st deploy.Status
	if deploy.WantsProgress(ctx) && ctl.do(ctx, "GET", "/status", nil, &st) == nil {
		deploy.ReportProgress(ctx, deploy.RolloutProgress(spec, st))
	}
	return true, nil
}

// rolloutWatchEvery is how often a rollout's progress is read from the
// supervisor for a caller that wants it.
const rolloutWatchEvery = 100 * time.Millisecond

// watchRollout reports the progress of the rollout of spec, read from the
// supervisor behind ctl every so often, while the rollout runs and when
// ctx wants it (deploy.WithProgress): each change of the replicas'
// counts is one report. The func it returns stops the watch and waits for
// it, so that nothing is reported after it returned.
func watchRollout(ctx context.Context, ctl *control, spec deploy.Spec, every time.Duration) (stop func()) {
	if !deploy.WantsProgress(ctx) {
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		last := ""
		for {
			var st deploy.Status
			if err := ctl.do(wctx, "GET", "/status", nil, &st); err == nil && wctx.Err() == nil {
				if msg := deploy.RolloutProgress(spec, st); msg != last {
					last = msg
					deploy.ReportProgress(ctx, msg)
				}
			}
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// resolve returns spec as the supervisor behind ctl, of the environment
// directory dir, is to run it: $DATA_DIR
// in its Env replaced by the data directory its replicas see, which
// depends on how the supervisor isolates them. The supervisor gets values
// it passes on as they are, whichever version of slipway started it.
func (b *Backend) resolve(ctx context.Context, ctl *control, dir string, spec deploy.Spec) (deploy.Spec, error) {
	var st deploy.Status
	if err := ctl.do(ctx, "GET", "/status", nil, &st); err != nil {
		return spec, err
	}
	return resolveDataDir(spec, replicaDataDir(dir, st.Isolation)), nil
}

// supervisor returns the control of the supervisor of spec's environment,
// whose directory is dir, starting one when none runs. A supervisor gets
// slipway's environment but the variables spec's secrets are read from:
// it holds their values in memory only.
func (b *Backend) supervisor(ctx context.Context, dir string, spec deploy.Spec) (*control, error) {
	env := spec.Environment
	ctl := newControl(dir)
	if err := ctl.do(ctx, "GET", "/status", nil, nil); err == nil {
		return ctl, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "supervisor.log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(b.exe, SupervisorCommand, env)
	cmd.Env = append(environWithout(secretVars(spec)), envSupervisor+"="+dir)
	if b.noSandbox {
		cmd.Env = append(cmd.Env, envNoSandbox+"=1")
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // reap it if it ever exits
	b.logger.Info("started supervisor", "environment", env, "pid", cmd.Process.Pid)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := ctl.do(ctx, "GET", "/status", nil, nil); err == nil {
			return ctl, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("supervisor exited at start: %s", strings.Join(lastLines(logPath, 5), "; "))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("supervisor did not answer on %s within 15s; see %s", ctl.sock, logPath)
		}
	}
}

// Status reports what env serves: see deploy.Backend. An environment
// whose supervisor is gone (the machine restarted, or it was killed) is
// not deployed: the controller, which holds the desired state, applies it
// again.
func (b *Backend) Status(ctx context.Context, env string) (deploy.Status, error) {
	var st deploy.Status
	err := newControl(b.envDir(ctx, env)).do(ctx, "GET", "/status", nil, &st)
	switch {
	case errors.Is(err, errNoSupervisor):
		return deploy.Status{}, fmt.Errorf("status of %s: %w", env, deploy.ErrNotDeployed)
	case err != nil:
		return deploy.Status{}, fmt.Errorf("status of %s: %w", env, err)
	case st.Commit == "" && len(st.Instances) == 0:
		return deploy.Status{}, fmt.Errorf("status of %s: %w", env, deploy.ErrNotDeployed)
	}
	return st, nil
}

// Stop removes env's replicas and load balancer; its data directory stays.
func (b *Backend) Stop(ctx context.Context, env string) error {
	defer b.lock(env)()
	err := newControl(b.envDir(ctx, env)).do(ctx, "POST", "/stop", nil, nil)
	switch {
	case errors.Is(err, errNoSupervisor):
		return fmt.Errorf("stop %s: %w", env, deploy.ErrNotDeployed)
	case err != nil:
		return fmt.Errorf("stop %s: %w", env, err)
	}
	return nil
}

// Logs writes env's replica logs to w: see deploy.LogSource.
func (b *Backend) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	dir := filepath.Join(b.envDir(ctx, env), "logs")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("logs of %s: %w", env, deploy.ErrNotDeployed)
	}
	return writeLogs(ctx, dir, follow, w)
}

// Purge deletes env's directory: its data (the default SQLite database),
// logs and unpacked state. It refuses while env's supervisor runs (Stop it
// first) and returns the directory it deleted, or "" when there was none.
func (b *Backend) Purge(ctx context.Context, env string) (string, error) {
	defer b.lock(env)()
	dir := b.envDir(ctx, env)
	if c, err := dialSocket(ctx, filepath.Join(dir, socketName)); err == nil {
		c.Close()
		return "", fmt.Errorf("delete %s's data: it still runs; stop it first", env)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("delete %s's data: %w", env, err)
	}
	return dir, nil
}
