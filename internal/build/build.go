// Package build turns a commit of the application into a tested image in a
// registry, the way ko does and without a container daemon: a clean
// checkout, the test command, a static go build, a minimal base layer that
// slipway writes itself, a push by digest, then the tags. Every build is a
// ledger row whose state is written before each step is taken.
package build

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

// Errors a build fails with, besides gitsource.ErrUnknownRevision and
// gitsource.ErrUnreachable.
var (
	// ErrTestsFailed: the test command exited non-zero.
	ErrTestsFailed = errors.New("tests failed")
	// ErrTimeout: the test command or go build ran out of time.
	ErrTimeout = errors.New("timed out")
	// ErrCompile: go build failed.
	ErrCompile = errors.New("go build failed")
	// ErrPush: the registry did not take the image.
	ErrPush = errors.New("push failed")
	// ErrModules: go mod download failed.
	ErrModules = errors.New("fetching modules failed")
)

// killGrace is how long a test command gets between SIGTERM and SIGKILL.
const killGrace = 5 * time.Second

// tailLines is how many lines of a failing step's output the reason holds.
const tailLines = 20

// Builder builds images of one application.
type Builder struct {
	App      string            // the application's name
	Test     config.Test       // the test step
	Build    config.Build      // what to build
	Source   *gitsource.Source // the app's repository
	Registry *registry.Client  // where images go
	// Repository is the image repository, such as 127.0.0.1:5000/app.
	Repository string
	Ledger     *ledger.Store
	// DataDir holds logs (DataDir/logs/builds) and checkouts (DataDir/work).
	DataDir string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	Logger   *slog.Logger
	// Go is the go command; "go" when empty.
	Go string
	// CIRegistry reads images from CI (build.kind: image); nil: Registry.
	// CIInsecure allows plain HTTP to theirs.
	CIRegistry *registry.Client
	CIInsecure bool

	arrived arrivals // images imported from CI

	// Schema names the app's migrations, whose declarations go into image
	// labels (docs/migrations.md).
	Schema config.Schema
	// Buildah is the buildah command of Dockerfile builds; "buildah" when
	// empty.
	Buildah string
	// InsecureRegistry: the image registry is spoken to over plain HTTP or
	// without verifying TLS (the embedded registry, registry.insecure).
	InsecureRegistry bool

	background sync.WaitGroup // work left running by builds (see Wait)

	unrecorded unrecorded // failed builds the ledger did not take yet
}

// New returns a Builder for the configuration, wiring the parts by hand.
func New(cfg *config.Config, src *gitsource.Source, reg *registry.Client, repository string, store *ledger.Store, dataDir string) *Builder {
	return &Builder{
		App:        cfg.App,
		Test:       cfg.Test,
		Build:      cfg.Build,
		Source:     src,
		Registry:   reg,
		Repository: repository,
		Ledger:     store,
		DataDir:    dataDir,
		Schema:     cfg.Schema,

		InsecureRegistry: cfg.Registry.Insecure || cfg.Registry.Embedded(),
	}
}

// Request is what to build.
type Request struct {
	Rev     string // branch, tag or commit; "master" when empty
	Trigger string // who asks: cli, push, …
	// NoFetch skips fetching when the caller has just fetched; a commit
	// the repository does not have yet is fetched all the same.
	NoFetch bool
	// Check, when set, runs once the commit is in the repository and before
	// anything is tested or built; its error fails the build.
	Check func(ctx context.Context, commit string) error
}

// Result is a finished build.
type Result struct {
	Build   ledger.Build
	Digest  v1.Hash
	Skipped bool // the image existed: nothing was tested or built
}

// Reference is REPOSITORY@sha256:….
func (r Result) Reference() string { return r.Build.Reference() }

func (b *Builder) progress(format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format+"\n", args...)
	}
}

func (b *Builder) logger() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

// Run builds req.Rev. On failure the returned Result still carries the
// failed ledger row.
func (b *Builder) Run(ctx context.Context, req Request) (Result, error) {
	if req.Rev == "" {
		req.Rev = "master"
	}
	if err := b.recordFailed(ctx); err != nil {
		return Result{}, err
	}
	row, err := b.Ledger.CreateBuild(ctx, ledger.Build{App: b.App, Commit: req.Rev, Image: b.Repository, Trigger: req.Trigger})
	if err != nil {
		return Result{}, ledger.Explain(err)
	}
	res := Result{Build: row}
	d, skipped, err := b.run(ctx, &res.Build, req)
	res.Digest, res.Skipped = d, skipped
	if err != nil {
		err = ledger.ExplainWrite(err)
		b.fail(&res.Build, err)
		return res, err
	}
	return res, nil
}

// fail records the build as failed with err as the reason. The context of
// the build may be cancelled by now: the record is written regardless.
func (b *Builder) fail(row *ledger.Build, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	row.State = ledger.BuildFailed
	row.Reason = err.Error()
	if uerr := b.Ledger.UpdateBuild(ctx, row); uerr != nil {
		uerr = ledger.Explain(uerr)
		b.logger().Error("record failed build", "build", row.ID, "err", uerr)
		if waitsForLedger(uerr) {
			b.unrecorded.add(*row) // written by the next build
			return
		}
	}
	b.addEvent(ctx, *row, ledger.OutcomeFailed, firstLine(err.Error()))
}

func (b *Builder) addEvent(ctx context.Context, row ledger.Build, outcome, msg string) {
	_, err := b.Ledger.AddEvent(ctx, ledger.Event{Kind: ledger.EventBuild, Commit: row.Commit, Digest: row.Digest,
		Trigger: row.Trigger, Outcome: outcome, Message: msg})
	if err != nil {
		b.logger().Error("record build event", "build", row.ID, "err", err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func (b *Builder) setState(ctx context.Context, row *ledger.Build, st ledger.BuildState) error {
	row.State = st
	return b.Ledger.UpdateBuild(ctx, row)
}

func (b *Builder) run(ctx context.Context, row *ledger.Build, req Request) (v1.Hash, bool, error) {
	if !req.NoFetch {
		b.progress("fetching %s", b.Source.URL())
		if err := b.Source.Fetch(ctx); err != nil {
			return v1.Hash{}, false, err
		}
	}
	commit, err := b.Source.Resolve(ctx, req.Rev)
	if req.NoFetch && errors.Is(err, gitsource.ErrUnknownRevision) {
		b.progress("fetching %s", b.Source.URL())
		if err := b.Source.Fetch(ctx); err != nil {
			return v1.Hash{}, false, err
		}
		commit, err = b.Source.Resolve(ctx, req.Rev)
	}
	if err != nil {
		return v1.Hash{}, false, err
	}
	row.Commit = commit
	if req.Check != nil {
		if err := req.Check(ctx, commit); err != nil {
			return v1.Hash{}, false, err
		}
	}
	short := commit[:7]
	shaTag := "sha-" + commit

	// A commit that has an image is not built again.
	d, err := b.Registry.Digest(ctx, b.Repository, shaTag)
	switch {
	case err == nil:
		row.State, row.Digest = ledger.BuildPushed, d.String()
		row.Reason = "already built: " + b.Repository + ":" + shaTag + " exists; nothing tested or built"
		if b.Build.ImagesFromCI() {
			row.Reason = "image from CI: " + b.Repository + ":" + shaTag
		}
		if row.Schema, err = b.imageSchema(ctx, d); err != nil {
			return v1.Hash{}, false, err
		}
		if err := b.Ledger.UpdateBuild(ctx, row); err != nil {
			return v1.Hash{}, false, err
		}
		b.addEvent(ctx, *row, ledger.OutcomeSkipped, row.Reason)
		b.progress("%s: already built as %s", short, row.Reference())
		return d, true, nil
	case !errors.Is(err, registry.ErrNotFound):
		return v1.Hash{}, false, fmt.Errorf("%w: check for an existing image: %w", ErrPush, err)
	}
	if b.Build.ImagesFromCI() {
		d, err := b.awaitImage(ctx, row, commit)
		return d, false, err
	}

	work, err := os.MkdirTemp(b.workRoot(), fmt.Sprintf("%d-%s-", row.ID, short))
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("make work directory: %w", err)
	}
	defer os.RemoveAll(work)
	checkout, unlock := b.checkoutDir(work)
	defer unlock()
	logPath := filepath.Join(b.DataDir, "logs", "builds", fmt.Sprintf("%d-%s.log", row.ID, commit))
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return v1.Hash{}, false, fmt.Errorf("make log directory: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()
	row.LogPath = logPath

	steps := &steps{short: short, build: row.ID, log: logFile, out: b.Progress, logger: b.logger()}
	if b.isDockerfile() {
		d, err := b.dockerfile(ctx, row, commit, checkout, work, steps, logFile, logPath)
		return d, false, err
	}

	// Test.
	if err := b.setState(ctx, row, ledger.BuildTesting); err != nil {
		return v1.Hash{}, false, err
	}
	b.progress("%s: checking out", short)
	if err := b.Source.Checkout(ctx, commit, checkout); err != nil {
		return v1.Hash{}, false, err
	}
	schemaLabels, err := b.readSchema(commit, checkout, row)
	if err != nil {
		return v1.Hash{}, false, err
	}
	if err := b.fetchModules(ctx, steps, checkout, logFile, logPath); err != nil {
		return v1.Hash{}, false, err
	}
	st := steps.start(StepTesting, b.Test.Command)
	fmt.Fprintf(logFile, "$ %s\n", b.Test.Command)
	err = runLoggedAt(ctx, "build.test", procsDir(b.DataDir), checkout, logFile, b.Test.Timeout, b.testEnv(), "/bin/sh", "-c", b.Test.Command)
	if err != nil {
		row.TestDuration = st.fail()
		return v1.Hash{}, false, b.stepError(ErrTestsFailed, "tests", b.Test.Timeout, "test.timeout", logPath, err)
	}
	row.TestDuration = st.end("tests passed", "", "")

	// Build. The checkout goes back to exactly the commit first, so that
	// whatever the tests left does not mark the binary as modified.
	if err := b.setState(ctx, row, ledger.BuildBuilding); err != nil {
		return v1.Hash{}, false, err
	}
	start := time.Now()
	if err := gitsource.Clean(ctx, checkout); err != nil {
		return v1.Hash{}, false, err
	}
	binary := filepath.Join(work, b.App)
	args := []string{"build", "-trimpath", "-buildvcs=true", "-o", binary}
	if len(b.Build.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.Build.Tags, ","))
	}
	if b.Build.LDFlags != "" {
		args = append(args, "-ldflags", b.Build.LDFlags)
	}
	args = append(args, "--", b.Build.Main)
	st = steps.start(StepBuilding, b.Build.Main)
	fmt.Fprintf(logFile, "$ CGO_ENABLED=0 GOOS=linux GOARCH=%s go %s\n", runtime.GOARCH, strings.Join(args, " "))
	env := append(b.goEnv(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if err := runLoggedAt(ctx, "build.compile", procsDir(b.DataDir), checkout, logFile, b.Build.Timeout, env, b.goCommand(), args...); err != nil {
		st.fail()
		row.BuildDuration = time.Since(start)
		return v1.Hash{}, false, b.stepError(ErrCompile, "go build", b.Build.Timeout, "build.timeout", logPath, err)
	}
	st.end("compiled", "", "")
	when, err := b.Source.CommitTime(ctx, commit)
	if err != nil {
		return v1.Hash{}, false, err
	}
	st = steps.start(StepImage, "")
	img, err := buildImage(binary, imageSpec{
		App: b.App, Commit: commit, CommitTime: when, Source: b.Source.URL(), Port: b.Build.Port, Arch: runtime.GOARCH,
		Labels: schemaLabels,
	})
	if err != nil {
		st.fail()
		return v1.Hash{}, false, err
	}
	digest, err := img.Digest()
	if err != nil {
		st.fail()
		return v1.Hash{}, false, fmt.Errorf("image digest: %w", err)
	}
	st.end("image made", "", " ("+digest.String()+")", "digest", digest.String())
	row.BuildDuration = time.Since(start)
	row.Digest = digest.String()
	crashpoint.Hit("build.image")

	// Push by digest, then the tags; sha-<commit> last, since its presence
	// means "built" (see above).
	st = steps.start(StepPushing, b.Repository)
	if _, err := b.Registry.Push(ctx, b.Repository, img, short, "latest", shaTag); err != nil {
		st.fail()
		return v1.Hash{}, false, fmt.Errorf("%w: %w", ErrPush, err)
	}
	st.end("pushed", row.Reference(), fmt.Sprintf(" (tags %s, latest, %s)", short, shaTag), "image", row.Reference())
	row.State = ledger.BuildPushed
	row.Reason = ""
	crashpoint.Hit("build.record")
	if err := b.Ledger.UpdateBuild(ctx, row); err != nil {
		return v1.Hash{}, false, err
	}
	crashpoint.Hit("build.recorded")
	b.addEvent(ctx, *row, ledger.OutcomeSucceeded, "pushed "+row.Reference())
	return digest, false, nil
}

// checkoutDir returns where to check the commit out: the app's stable
// directory (same path every build, so the Go caches recognise unchanged
// packages and test results), locked for this build; or, while another
// build holds it, a directory inside work.
func (b *Builder) checkoutDir(work string) (string, func()) {
	dir := filepath.Join(b.workRoot(), b.App+".src")
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return filepath.Join(work, "src"), func() {}
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return filepath.Join(work, "src"), func() {}
	}
	return dir, func() {
		syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
	}
}

// Reconcile finishes the ledger rows of builds that were in flight when
// slipway stopped: each is marked failed, with the step it was in, so that
// the next build of its commit starts afresh (nothing was tagged: tags are
// written only after a complete push). Only this builder's app's rows are
// touched: each app's builder reconciles its own. Call it once at
// start-up, before any build of this app runs.
func (b *Builder) Reconcile(ctx context.Context) ([]ledger.Build, error) {
	// What a killed slipway left running or half made goes first.
	if killed := killLeftGroups(procsDir(b.DataDir), b.workRoot(), filepath.Join(b.DataDir, "smoke")); len(killed) > 0 {
		b.logger().Warn("killed the processes of builds and smoke tests a stopped slipway left running", "groups", killed)
	}
	if removed := removeLeftWork(b.workRoot()); len(removed) > 0 {
		b.logger().Info("removed the work directories of interrupted builds", "dirs", removed)
	}
	rows, err := b.Ledger.UnfinishedBuilds(ctx, b.App)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		rows[i].Reason = fmt.Sprintf("interrupted: slipway stopped while the build was %s; build the commit again", rows[i].State)
		rows[i].State = ledger.BuildFailed
		if err := b.Ledger.UpdateBuild(ctx, &rows[i]); err != nil {
			return nil, err
		}
		b.addEvent(ctx, rows[i], ledger.OutcomeFailed, rows[i].Reason)
	}
	return rows, nil
}

func (b *Builder) workRoot() string {
	dir := filepath.Join(b.DataDir, "work")
	os.MkdirAll(dir, 0o755)
	return dir
}

func (b *Builder) goCommand() string {
	if b.Go != "" {
		return b.Go
	}
	return "go"
}

// goEnv is the environment of the build commands.
func (b *Builder) goEnv() []string {
	return os.Environ()
}

// testEnv is the environment of the test command: the build's, compiling
// as go build does, so that the packages the tests compile are the very
// ones go build then finds in the build cache (without this a first build
// compiles every dependency twice): -trimpath added to GOFLAGS, and
// CGO_ENABLED=0 unless the environment sets CGO_ENABLED or the command
// needs cgo (-race, -msan, -asan; a command can also say CGO_ENABLED=1
// itself). The tests then run the code the image ships.
func (b *Builder) testEnv() []string {
	return likeTheBuild(b.goEnv(), b.Test.Command)
}

// likeTheBuild returns env with go build's settings added for command (see
// testEnv).
func likeTheBuild(env []string, command string) []string {
	env = withGoFlag(env, "-trimpath")
	for _, kv := range env {
		if strings.HasPrefix(kv, "CGO_ENABLED=") {
			return env
		}
	}
	for _, f := range strings.Fields(command) {
		if f == "-race" || f == "-msan" || f == "-asan" {
			return env
		}
	}
	return append(env, "CGO_ENABLED=0")
}

// withGoFlag returns env with flag added to its GOFLAGS.
func withGoFlag(env []string, flag string) []string {
	out := make([]string, 0, len(env)+1)
	flags := flag
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			if slices.Contains(strings.Fields(v), flag) {
				flags = v
			} else if strings.TrimSpace(v) != "" {
				flags = v + " " + flag
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GOFLAGS="+flags)
}

// fetchModules downloads the modules the checkout needs, as a step of its
// own, so that the first build of an app says what it waits for; the tests
// and go build then find them in the module cache. A checkout without
// go.mod, or with its modules vendored, has nothing to fetch.
func (b *Builder) fetchModules(ctx context.Context, steps *steps, checkout string, logFile *os.File, logPath string) error {
	if _, err := os.Stat(filepath.Join(checkout, "go.mod")); err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(checkout, "vendor", "modules.txt")); err == nil {
		return nil
	}
	for _, kv := range b.goEnv() {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok && strings.Contains(v, "-mod=vendor") {
			return nil
		}
	}
	st := steps.start(StepModules, "go mod download")
	fmt.Fprintf(logFile, "$ go mod download\n")
	if err := runLoggedAt(ctx, "build.modules", procsDir(b.DataDir), checkout, logFile, b.Build.Timeout, b.goEnv(), b.goCommand(), "mod", "download"); err != nil {
		st.fail()
		return b.stepError(ErrModules, "go mod download", b.Build.Timeout, "build.timeout", logPath, err)
	}
	st.end("modules fetched", "", "")
	return nil
}

// stepError explains a failed test or build step: timeout or failure, and
// the end of its output.
func (b *Builder) stepError(kind error, step string, timeout time.Duration, field, logPath string, err error) error {
	tail := lastLines(logPath, tailLines)
	if errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%w: %s did not finish within %s and was stopped (raise %s if needed); output in %s:\n%s",
			ErrTimeout, step, timeout, field, logPath, tail)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", step, err)
	}
	return fmt.Errorf("%w (%v); output in %s:\n%s", kind, err, logPath, tail)
}

// runLogged runs name with args in dir, its output appended to log, within
// timeout. The command runs in its own process group: on timeout or
// cancellation the group gets SIGTERM, and whatever is left of it SIGKILL
// once the command is done (at most killGrace later).
// A timeout returns an error wrapping ErrTimeout.
func runLogged(ctx context.Context, dir string, log *os.File, timeout time.Duration, env []string, name string, args ...string) error {
	return runLoggedAt(ctx, "", "", dir, log, timeout, env, name, args...)
}

// runLoggedAt is runLogged with the command's process group recorded in
// procs while it runs (trackGroup), and the crash point reached once it
// has started (package crashpoint).
func runLoggedAt(ctx context.Context, point, procs, dir string, log *os.File, timeout time.Duration, env []string, name string, args ...string) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = killGrace // then the shell is killed, and the group below
	err := cmd.Start()
	if err == nil {
		forget := trackGroup(procs, cmd.Process.Pid)
		defer forget()
		crashpoint.Hit(point)
		err = cmd.Wait()
	}
	if cmd.Process != nil {
		// Whatever the command left running in its group goes too.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case tctx.Err() != nil:
			return fmt.Errorf("%w after %s", ErrTimeout, timeout)
		}
		return err
	}
	return nil
}

// lastLines returns the last n lines of a file, leaving out the build's
// own "# still …" and "# … failed after …" lines: the reason shows what
// the command said.
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "# still ") || strings.HasPrefix(l, "# ") && strings.Contains(l, " failed after ") {
			continue
		}
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
