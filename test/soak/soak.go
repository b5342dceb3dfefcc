// Package soak runs the sample service through many cycles of push → dev →
// release → rollback with the real `slipway serve` binary, while a load
// generator sends a steady rate of requests to each environment, and
// samples the controller's and supervisors' memory, goroutines and file
// descriptors as it goes. Every tenth cycle also scales prod up and down
// and kills one of its replicas (SIGKILL); every fifth cycle first pushes a
// commit whose replicas crash at start, so that dev refuses it and its
// image is one that no environment ever ran: the images the garbage
// collection (docs/gc.md) deletes.
//
// The test of this package (tag integration) runs a short soak and checks
// it; bench/soak runs the long one and prints the figures of
// docs/benchmarks.md.
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// App is the soaked app's name.
const App = "birthday-app"

// Envs are the soaked environments.
var Envs = []string{"dev", "prod"}

// Options say how long and how hard to soak.
type Options struct {
	// Dir is the workspace (keep it short: unix sockets live below it).
	Dir string
	// Module is the root of slipway's module, where the binary is built
	// from.
	Module string
	// Cycles of push → dev → release → rollback.
	Cycles int
	// Rate is the requests per second sent to each environment.
	Rate int
	// KeepBuilds is the configuration's gc.keepBuilds.
	KeepBuilds int
	// GCInterval is the configuration's gc.interval (at least a minute).
	GCInterval time.Duration
	// StepTimeout bounds each wait (a deployment reaching its state).
	StepTimeout time.Duration
	// Until, when set, ends the soak after the cycle running at that
	// time, however many cycles were asked for.
	Until time.Time
	// UntilCollected goes on with cycles past Cycles until the controller
	// has logged a collection of its own (the periodic one, every
	// GCInterval), so that one ran between releases and under load
	// however fast the cycles were; for at most two GCIntervals of load,
	// so that a controller that never collects ends the soak.
	UntilCollected bool
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// Sample is one reading of the processes, taken after a cycle.
type Sample struct {
	Cycle int
	// Controller and each environment's supervisor, by name
	// ("controller", "supervisor dev", …).
	Procs map[string]Proc
}

// Proc is what one process holds.
type Proc struct {
	RSSKiB     int64
	Goroutines int
	FDs        int
	Threads    int
}

// Load is what the load generator of one environment saw.
type Load struct {
	OK, Failed  int64
	FirstErrors []string
	Seconds     float64
}

// Sizes are the data directory's parts that grow with releases.
type Sizes struct {
	RegistryBytes, LedgerBytes, ImagesBytes, WorkBytes int64
	Manifests, Blobs                                   int
	UnpackedImages                                     int
	Builds, Deployments                                int
}

// Result is what a soak found.
type Result struct {
	Cycles, Releases, Rollbacks, Scales, Kills, CrashingCommits int
	Loads                                                       map[string]*Load
	Samples                                                     []Sample
	Before, After                                               Sizes
	// GC is the last `slipway gc --dry-run -o json` output, and GCLog
	// the controller's log lines of collections.
	GC      json.RawMessage
	GCError string
	GCLines []string
	Elapsed time.Duration
	LoadAvg [2]string
	// Digests every environment ran (succeeded deployments) at the end,
	// and the images of never-deployed builds, by commit.
	Ran           map[string]bool
	NeverDeployed map[string]string
	DataDir       string
	Bin           string
}

type soak struct {
	o       Options
	bin     string
	ws      demo.Workspace
	cfg     string
	apiURL  string
	client  *api.Client
	serve   *exec.Cmd
	log     *os.File
	addrs   map[string]string
	res     *Result
	commits []string
}

// Run soaks and returns what it found; the error says what went wrong
// first (a step that failed or timed out). Everything it started is
// stopped before it returns.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if o.Cycles <= 0 {
		o.Cycles = 20
	}
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.KeepBuilds <= 0 {
		o.KeepBuilds = 3
	}
	if o.GCInterval <= 0 {
		o.GCInterval = time.Minute
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 5 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	s := &soak{o: o, res: &Result{Loads: map[string]*Load{}, NeverDeployed: map[string]string{}, Ran: map[string]bool{}}, addrs: map[string]string{}}
	s.res.LoadAvg[0] = loadavg()
	start := time.Now()
	defer func() {
		s.stopServe()
		s.stopEnvironments()
		if s.log != nil {
			s.log.Close()
		}
		res = s.res
		res.Elapsed = time.Since(start)
		res.LoadAvg[1] = loadavg()
	}()
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if err := s.startServe(ctx); err != nil {
		return nil, err
	}
	// The first commit, through dev and released to prod, before any load.
	first, err := s.head(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.waitEnv(ctx, "dev", first); err != nil {
		return nil, err
	}
	// The sample repository's release branch is on that commit: prod
	// takes it by itself.
	if err := s.waitEnv(ctx, "prod", first); err != nil {
		return nil, err
	}
	s.res.Before, err = s.sizes(ctx)
	if err != nil {
		return nil, err
	}
	s.res.Before.Builds, s.res.Before.Deployments = s.ledgerCounts(ctx)

	loads := map[string]*loader{}
	for _, env := range Envs {
		l, err := startLoad(ctx, "http://"+s.addrs[env], o.Rate)
		if err != nil {
			return nil, err
		}
		loads[env] = l
	}
	defer func() {
		for env, l := range loads {
			s.res.Loads[env] = l.finish()
		}
	}()

	loaded := time.Now()
	uncollected := func() bool {
		return o.UntilCollected && len(s.gcLines()) == 0 && time.Since(loaded) < 2*o.GCInterval
	}
	for c := 1; c <= o.Cycles || uncollected(); c++ {
		if err := s.cycle(ctx, c, first); err != nil {
			return nil, fmt.Errorf("cycle %d: %w; see %s", c, err, s.log.Name())
		}
		s.res.Cycles = c
		sm, err := s.sample(ctx, c)
		if err != nil {
			return nil, err
		}
		s.res.Samples = append(s.res.Samples, sm)
		if !o.Until.IsZero() && time.Now().After(o.Until) && c < o.Cycles {
			o.Logf("cycle %d/%d: out of time, stopping here", c, o.Cycles)
			break
		}
		if c == o.Cycles && uncollected() {
			o.Logf("cycle %d/%d: no periodic collection yet; more cycles until there is one", c, o.Cycles)
		}
		if c%10 == 0 || c == o.Cycles {
			okTotal, failed := int64(0), int64(0)
			for _, l := range loads {
				okTotal += l.ok.Load()
				failed += l.failed.Load()
			}
			o.Logf("cycle %d/%d: %d requests answered, %d failed; controller RSS %d KiB, %d goroutines, %d fds; load average %s",
				c, o.Cycles, okTotal, failed, sm.Procs["controller"].RSSKiB, sm.Procs["controller"].Goroutines, sm.Procs["controller"].FDs, loadavg())
		}
	}
	for env, l := range loads {
		s.res.Loads[env] = l.finish()
	}
	loads = nil

	// A collection on request, so that the sizes after are those of what
	// the rule keeps, whenever the periodic one last ran.
	out, err := s.slipway(ctx, "gc", "-o", "json")
	if err != nil {
		s.res.GCError = err.Error()
	} else {
		s.res.GC = json.RawMessage(out)
	}
	s.res.After, err = s.sizes(ctx)
	if err != nil {
		return nil, err
	}
	s.res.After.Builds, s.res.After.Deployments = s.ledgerCounts(ctx)
	s.res.GCLines = s.gcLines()
	if err := s.ran(ctx); err != nil {
		return nil, err
	}
	return s.res, nil
}

func (s *soak) prepare(ctx context.Context) error {
	if err := os.MkdirAll(s.o.Dir, 0o755); err != nil {
		return err
	}
	s.bin = filepath.Join(s.o.Dir, "slipway")
	s.res.Bin = s.bin
	build := exec.CommandContext(ctx, "go", "build", "-o", s.bin, "./cmd/slipway")
	build.Dir = s.o.Module
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build slipway: %v\n%s", err, out)
	}
	ws, err := demo.Prepare(ctx, demo.Options{Dir: filepath.Join(s.o.Dir, "ws")})
	if err != nil {
		return err
	}
	s.ws = ws
	s.res.DataDir = ws.DataDir
	for _, env := range Envs {
		if s.addrs[env], err = freeAddr(); err != nil {
			return err
		}
	}
	// A fast app: the tests are the sample service's own in CI; here
	// the soak measures slipway, so the test command does nothing.
	y := fmt.Sprintf(`app: %s
repo: {url: %s, poll: 2s}
test: {command: "true"}
gc: {keepBuilds: %d, interval: %s}
environments:
  - name: dev
    listen: %s
    replicas: 2
    rollout: {readyTimeout: 20s, gracePeriod: 5s}
  - name: prod
    listen: %s
    replicas: 2
    rollout: {readyTimeout: 20s, gracePeriod: 5s}
`, App, ws.Bare, s.o.KeepBuilds, s.o.GCInterval, s.addrs["dev"], s.addrs["prod"])
	s.cfg = filepath.Join(s.o.Dir, "slipway.yaml")
	return os.WriteFile(s.cfg, []byte(y), 0o644)
}

func (s *soak) startServe(ctx context.Context) error {
	apiAddr, err := freeAddr()
	if err != nil {
		return err
	}
	regAddr, err := freeAddr()
	if err != nil {
		return err
	}
	s.apiURL = "http://" + apiAddr
	s.log, err = os.OpenFile(filepath.Join(s.o.Dir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.serve = exec.Command(s.bin, "serve", "--config", s.cfg, "--data-dir", s.ws.DataDir, "--api-addr", apiAddr, "--registry-addr", regAddr)
	s.serve.Stdout, s.serve.Stderr = s.log, s.log
	if err := s.serve.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		tok, err := os.ReadFile(filepath.Join(s.ws.DataDir, api.TokenFile))
		if err == nil {
			s.client = api.NewClient(s.apiURL, strings.TrimSpace(string(tok)))
			if _, err := s.client.Apps(ctx); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("serve did not answer within a minute; see %s", s.log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *soak) stopServe() {
	if s.serve == nil || s.serve.Process == nil {
		return
	}
	s.serve.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.serve.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.serve.Process.Kill()
		<-done
	}
	s.serve = nil
}

// stopEnvironments stops the supervisors serve leaves running.
func (s *soak) stopEnvironments() {
	if s.ws.DataDir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	be, err := local.New(local.Options{Dir: s.runDir(), App: App, LegacyDir: filepath.Join(s.ws.DataDir, "run")})
	if err != nil {
		s.o.Logf("stop environments: %v", err)
		return
	}
	for _, env := range Envs {
		if err := be.Stop(ctx, env); err != nil {
			s.o.Logf("stop %s: %v", env, err)
		}
	}
}

func (s *soak) runDir() string { return filepath.Join(s.ws.DataDir, "run", App) }

func (s *soak) git(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = s.ws.Clone
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (s *soak) head(ctx context.Context) (string, error) { return s.git(ctx, "rev-parse", "HEAD") }

// commit changes one file of the service and pushes master; crash makes
// its replicas exit at start.
func (s *soak) commit(ctx context.Context, msg string, crash bool) (string, error) {
	src := fmt.Sprintf("package birthday\n\nvar soakStamp = %q\n", msg)
	if crash {
		src = fmt.Sprintf("package birthday\n\nimport \"os\"\n\nvar soakStamp = %q\n\n// A replica of this commit exits at start: no environment takes it.\nfunc init() {\n\tif os.Getenv(\"SLIPWAY_ENVIRONMENT\") != \"\" {\n\t\tos.Exit(3)\n\t}\n}\n", msg)
	}
	if err := os.WriteFile(filepath.Join(s.ws.Clone, "internal", "birthday", "zz_soak.go"), []byte(src), 0o644); err != nil {
		return "", err
	}
	if _, err := s.git(ctx, "add", "--all"); err != nil {
		return "", err
	}
	if _, err := s.git(ctx, "commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	if _, err := s.git(ctx, "push", "-q", "origin", "master"); err != nil {
		return "", err
	}
	return s.head(ctx)
}

// cycle is one push → dev → release → rollback, with the extras of its
// number. The rollback takes prod back to what it ran before the release,
// prev (the first commit), which every cycle's commit is a fast-forward of.
func (s *soak) cycle(ctx context.Context, c int, prev string) error {
	if c%5 == 0 {
		bad, err := s.commit(ctx, fmt.Sprintf("soak %d: replicas crash", c), true)
		if err != nil {
			return err
		}
		if err := s.waitDevFailed(ctx, bad); err != nil {
			return err
		}
		s.res.CrashingCommits++
		b, err := s.buildOf(ctx, bad)
		if err != nil {
			return err
		}
		s.res.NeverDeployed[bad] = b
	}
	commit, err := s.commit(ctx, fmt.Sprintf("soak %d", c), false)
	if err != nil {
		return err
	}
	if err := s.waitEnv(ctx, "dev", commit); err != nil {
		return err
	}
	if err := s.release(ctx, commit); err != nil {
		return err
	}
	s.res.Releases++
	d, err := s.client.Rollback(ctx, App, api.RollbackRequest{Env: "prod"})
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if err := s.finish(ctx, d.ID, "rollback"); err != nil {
		return err
	}
	if err := s.waitEnv(ctx, "prod", prev); err != nil {
		return err
	}
	s.res.Rollbacks++
	if c%10 == 0 {
		for _, n := range []int{3, 2} {
			d, err := s.client.Scale(ctx, App, "prod", n)
			if err != nil {
				return fmt.Errorf("scale prod=%d: %w", n, err)
			}
			if err := s.finish(ctx, d.ID, fmt.Sprintf("scale prod=%d", n)); err != nil {
				return err
			}
		}
		s.res.Scales += 2
		if err := s.killReplica(ctx, "prod"); err != nil {
			return err
		}
		s.res.Kills++
	}
	return nil
}

// release releases commit to prod and waits for it.
func (s *soak) release(ctx context.Context, commit string) error {
	d, err := s.client.Release(ctx, App, api.ReleaseRequest{Env: "prod", Commit: commit})
	if err != nil {
		return fmt.Errorf("release %s: %w", commit[:7], err)
	}
	if err := s.finish(ctx, d.ID, "release "+commit[:7]); err != nil {
		return err
	}
	return s.waitEnv(ctx, "prod", commit)
}

// finish waits for deployment id to succeed.
func (s *soak) finish(ctx context.Context, id int64, what string) error {
	wctx, cancel := context.WithTimeout(ctx, s.o.StepTimeout)
	defer cancel()
	d, err := s.client.Wait(wctx, App, id, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if d.State != "succeeded" {
		return fmt.Errorf("%s: deployment %d is %s: %s", what, id, d.State, d.Reason)
	}
	return nil
}

// waitEnv waits for env to run commit, healthy, with no rollout.
func (s *soak) waitEnv(ctx context.Context, env, commit string) error {
	return s.waitStatus(ctx, fmt.Sprintf("%s on %s", env, commit[:7]), func(st pipeline.Status) bool {
		e := envOf(st, env)
		return e.Commit != nil && *e.Commit == commit && e.Healthy && e.Rollout == nil
	})
}

// waitDevFailed waits for dev to have refused commit (a failed
// deployment after the current one) and to be healthy on what it ran.
func (s *soak) waitDevFailed(ctx context.Context, commit string) error {
	return s.waitStatus(ctx, "dev refusing "+commit[:7], func(st pipeline.Status) bool {
		e := envOf(st, "dev")
		return e.LastFailure != nil && strings.Contains(*e.LastFailure, commit[:7]) && e.Rollout == nil && e.Healthy
	})
}

func (s *soak) waitStatus(ctx context.Context, what string, ok func(pipeline.Status) bool) error {
	deadline := time.Now().Add(s.o.StepTimeout)
	var last pipeline.Status
	for {
		st, err := s.client.Status(ctx, App)
		if err == nil {
			if ok(st) {
				return nil
			}
			last = st
		}
		if time.Now().After(deadline) {
			raw, _ := json.Marshal(last.Environments)
			return fmt.Errorf("%s: not reached after %s (%v); status %s", what, s.o.StepTimeout, err, raw)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// buildOf returns the image of the app's build of commit.
func (s *soak) buildOf(ctx context.Context, commit string) (string, error) {
	builds, err := s.client.Builds(ctx, App, 50)
	if err != nil {
		return "", err
	}
	for _, b := range builds {
		if b.Commit == commit && b.Digest != "" {
			return b.Digest, nil
		}
	}
	return "", fmt.Errorf("no build of %s with an image", commit[:7])
}

// killReplica kills one ready replica of env with SIGKILL.
func (s *soak) killReplica(ctx context.Context, env string) error {
	st, err := s.client.Status(ctx, App)
	if err != nil {
		return err
	}
	for _, r := range envOf(st, env).Instances {
		if r.Ready && r.PID > 0 {
			if err := syscall.Kill(r.PID, syscall.SIGKILL); err != nil {
				return fmt.Errorf("kill replica %s (pid %d): %w", r.Name, r.PID, err)
			}
			// Back to every replica ready.
			return s.waitStatus(ctx, "prod ready again after the kill", func(st pipeline.Status) bool {
				e := envOf(st, env)
				return e.Healthy && e.Replicas.Ready == e.Replicas.Desired
			})
		}
	}
	return fmt.Errorf("no ready replica of %s with a pid to kill", env)
}

// slipway runs the CLI against the controller and returns its stdout.
func (s *soak) slipway(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.bin, append(args, "--config", s.cfg, "--server", s.apiURL, "--data-dir", s.ws.DataDir)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out, nil
}

// sample reads the controller's and supervisors' figures.
func (s *soak) sample(ctx context.Context, cycle int) (Sample, error) {
	sm := Sample{Cycle: cycle, Procs: map[string]Proc{}}
	p, err := procOf(s.serve.Process.Pid)
	if err != nil {
		return sm, fmt.Errorf("controller: %w", err)
	}
	if p.Goroutines, err = s.controllerGoroutines(ctx); err != nil {
		return sm, err
	}
	sm.Procs["controller"] = p
	for _, env := range Envs {
		dir := filepath.Join(s.runDir(), "envs", env)
		raw, err := os.ReadFile(filepath.Join(dir, "supervisor.pid"))
		if err != nil {
			return sm, fmt.Errorf("supervisor of %s: %w", env, err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		p, err := procOf(pid)
		if err != nil {
			return sm, fmt.Errorf("supervisor of %s: %w", env, err)
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		p.Goroutines, err = local.SupervisorGoroutines(gctx, dir)
		cancel()
		if err != nil {
			return sm, fmt.Errorf("supervisor of %s: %w", env, err)
		}
		sm.Procs["supervisor "+env] = p
	}
	return sm, nil
}

// controllerGoroutines reads go_goroutines from the controller's metrics.
func (s *soak) controllerGoroutines(ctx context.Context) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", s.apiURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			return int(n), err
		}
	}
	return 0, errors.New("go_goroutines not in the controller's /metrics")
}

func procOf(pid int) (Proc, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Proc{}, err
	}
	var p Proc
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			p.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
		case "Threads":
			p.Threads, _ = strconv.Atoi(f[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return Proc{}, err
	}
	p.FDs = len(fds)
	return p, nil
}

// sizes measures the data directory.
func (s *soak) sizes(ctx context.Context) (Sizes, error) {
	var z Sizes
	reg := filepath.Join(s.ws.DataDir, "registry")
	z.RegistryBytes = du(reg)
	for _, f := range []string{ledger.FileName, ledger.FileName + "-wal", ledger.FileName + "-shm"} {
		if fi, err := os.Stat(filepath.Join(s.ws.DataDir, f)); err == nil {
			z.LedgerBytes += fi.Size()
		}
	}
	z.ImagesBytes = du(filepath.Join(s.runDir(), "images"))
	z.WorkBytes = du(filepath.Join(s.ws.DataDir, "work"))
	blobs := filepath.Join(reg, "docker", "registry", "v2", "blobs", "sha256")
	filepath.WalkDir(blobs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "data" {
			z.Blobs++
		}
		return nil
	})
	revs := filepath.Join(reg, "docker", "registry", "v2", "repositories", App, "_manifests", "revisions", "sha256")
	if ents, err := os.ReadDir(revs); err == nil {
		for _, e := range ents {
			// A deleted manifest leaves its directory, without its link.
			if _, err := os.Stat(filepath.Join(revs, e.Name(), "link")); err == nil {
				z.Manifests++
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(s.runDir(), "images")); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "sha256-") {
				z.UnpackedImages++
			}
		}
	}
	return z, nil
}

func (s *soak) ledgerCounts(ctx context.Context) (builds, deployments int) {
	if b, err := s.client.Builds(ctx, App, 10000); err == nil {
		builds = len(b)
	}
	for _, env := range Envs {
		if h, err := s.client.History(ctx, App, env, 10000); err == nil {
			deployments += len(h.Deployments)
		}
	}
	return builds, deployments
}

// ran records the digests of every succeeded deployment.
func (s *soak) ran(ctx context.Context) error {
	for _, env := range Envs {
		h, err := s.client.History(ctx, App, env, 10000)
		if err != nil {
			return err
		}
		for _, d := range h.Deployments {
			if d.State == "succeeded" && d.Digest != "" {
				s.res.Ran[d.Digest] = true
			}
		}
	}
	return nil
}

// gcLines are the controller's log lines about collections.
func (s *soak) gcLines() []string {
	raw, err := os.ReadFile(s.log.Name())
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, "component=gc") {
			out = append(out, line)
		}
	}
	return out
}

func du(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func envOf(st pipeline.Status, name string) pipeline.EnvStatus {
	for _, e := range st.Environments {
		if e.Name == name {
			return e
		}
	}
	return pipeline.EnvStatus{}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func loadavg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// loader sends rate requests a second to one environment: a user is
// saved, then read back, over and over (PUT and GET /hello/NAME, both
// idempotent), and every answer must be 2xx.
type loader struct {
	url        string
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	start      time.Time
	done       *Load
}

// loadWorkers share an environment's rate.
const loadWorkers = 8

func startLoad(ctx context.Context, url string, rate int) (*loader, error) {
	ctx, cancel := context.WithCancel(ctx)
	l := &loader{url: url, cancel: cancel, start: time.Now()}
	tr := &http.Transport{MaxIdleConnsPerHost: loadWorkers}
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	every := time.Duration(float64(time.Second) * loadWorkers / float64(rate))
	for i := range loadWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			name := "soak" + string(rune('a'+i))
			next := time.Now()
			for n := 0; ; n++ {
				// Paced: a worker that fell behind catches up.
				next = next.Add(every)
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				} else if ctx.Err() != nil {
					return
				}
				l.one(ctx, c, name, n%4 == 0)
			}
		}()
	}
	return l, nil
}

func (l *loader) one(ctx context.Context, c *http.Client, name string, put bool) {
	var req *http.Request
	if put {
		req, _ = http.NewRequestWithContext(ctx, "PUT", l.url+"/hello/"+name, strings.NewReader(`{"dateOfBirth":"2000-01-02"}`))
	} else {
		req, _ = http.NewRequestWithContext(ctx, "GET", l.url+"/hello/"+name, nil)
	}
	resp, err := c.Do(req)
	if ctx.Err() != nil {
		return // stopping: not the service's failure
	}
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			err = fmt.Errorf("%s %s: %s (replica %s)", req.Method, req.URL.Path, resp.Status, resp.Header.Get("Slipway-Commit"))
		}
	}
	if err != nil {
		l.failed.Add(1)
		l.mu.Lock()
		if len(l.errs) < 10 {
			l.errs = append(l.errs, time.Now().UTC().Format("15:04:05.000")+" "+err.Error())
		}
		l.mu.Unlock()
		return
	}
	l.ok.Add(1)
}

// finish stops the load and returns what it saw; it may be called again.
func (l *loader) finish() *Load {
	if l.done != nil {
		return l.done
	}
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = &Load{OK: l.ok.Load(), Failed: l.failed.Load(), FirstErrors: slices.Clone(l.errs), Seconds: time.Since(l.start).Seconds()}
	return l.done
}
