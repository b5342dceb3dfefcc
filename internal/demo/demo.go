// Package demo makes the workspace of `slipway demo`: a bare git repository
// holding the sample service (whose source the slipway binary carries), a
// clone of it for the user, a slipway.yaml and a data directory. A
// workspace made before is reused as it is.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo/appsource"
)

//go:generate go run ./gen -src ../../examples/birthday-app -o birthday-app.tar

// appArchive is examples/birthday-app, packed by appsource.
//
//go:embed birthday-app.tar
var appArchive []byte

// AppArchive returns the embedded source archive of the sample service.
func AppArchive() []byte { return appArchive }

// Names inside a workspace.
const (
	BareRepo   = "app.git"
	Clone      = "app"
	ConfigFile = "slipway.yaml"
	DataDir    = ".slipway"
	AppName    = "birthday-app"
	// SmokeCommand runs the sample service's smoke test against SLIPWAY_URL.
	SmokeCommand = "go test -tags smoke -count=1 ./smoke"
)

// FirstTestTimeout bounds the demo app's test command: long enough for a
// first run on a small, busy machine.
const FirstTestTimeout = 30 * time.Minute

// Options say where the workspace is and where its environments listen.
type Options struct {
	Dir      string
	DevAddr  string // default 127.0.0.1:8081
	ProdAddr string // default :8080
}

// Workspace is a prepared demo workspace; all paths are absolute.
type Workspace struct {
	Dir     string
	Bare    string
	Clone   string
	Config  string
	DataDir string
	// Created is true when this call made the repository (a fresh
	// workspace), false when it resumed one.
	Created bool
}

// Prepare makes the workspace at o.Dir, or reuses what is there. The
// configuration is written each time, with o's addresses.
func Prepare(ctx context.Context, o Options) (Workspace, error) {
	if o.Dir == "" {
		return Workspace{}, errors.New("demo: no workspace directory given")
	}
	if o.DevAddr == "" {
		o.DevAddr = "127.0.0.1:8081"
	}
	if o.ProdAddr == "" {
		o.ProdAddr = ":8080"
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return Workspace{}, err
	}
	ws := Workspace{
		Dir:     dir,
		Bare:    filepath.Join(dir, BareRepo),
		Clone:   filepath.Join(dir, Clone),
		Config:  filepath.Join(dir, ConfigFile),
		DataDir: filepath.Join(dir, DataDir),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Workspace{}, fmt.Errorf("demo workspace: %w", err)
	}
	if _, err := os.Stat(filepath.Join(ws.Bare, "HEAD")); errors.Is(err, fs.ErrNotExist) {
		if err := makeRepository(ctx, ws.Bare); err != nil {
			return Workspace{}, err
		}
		ws.Created = true
	}
	if _, err := os.Stat(filepath.Join(ws.Clone, ".git")); errors.Is(err, fs.ErrNotExist) {
		if _, err := git(ctx, dir, "clone", "--quiet", BareRepo, Clone); err != nil {
			return Workspace{}, fmt.Errorf("demo: clone %s: %w", BareRepo, err)
		}
		for _, kv := range [][2]string{{"user.name", "Demo User"}, {"user.email", "demo@example.com"}, {"push.default", "current"}} {
			if _, err := git(ctx, ws.Clone, "config", kv[0], kv[1]); err != nil {
				return Workspace{}, fmt.Errorf("demo: configure the clone: %w", err)
			}
		}
	}
	if err := os.MkdirAll(ws.DataDir, 0o755); err != nil {
		return Workspace{}, fmt.Errorf("demo workspace: %w", err)
	}
	var buf bytes.Buffer
	if err := config.Write(&buf, Config(o.DevAddr, o.ProdAddr)); err != nil {
		return Workspace{}, err
	}
	header := "# Written by `slipway demo` at every start (its flags set the addresses).\n"
	if err := os.WriteFile(ws.Config, append([]byte(header), buf.Bytes()...), 0o644); err != nil {
		return Workspace{}, fmt.Errorf("demo: write %s: %w", ws.Config, err)
	}
	return ws, nil
}

// SchemaMigrations are the sample service's migration directories, one
// per SQL dialect.
const SchemaMigrations = "internal/store/migrations/*"

// Config is the demo's configuration: the sample service from app.git,
// dev (2 replicas, smoke-tested) and prod (4 replicas).
func Config(devAddr, prodAddr string) *config.Config {
	c := config.Default()
	c.App = AppName
	c.Repo.URL = BareRepo
	// The first test run on a machine compiles every dependency, SQLite in
	// Go among them: on two busy cores that alone can take more than the
	// default 10 minutes, and a demo that times out shows nothing.
	c.Test.Timeout = FirstTestTimeout
	// Each image records its schema (docs/migrations.md).
	c.Schema.Migrations = []string{SchemaMigrations}
	for i := range c.Environments {
		e := &c.Environments[i]
		switch e.Name {
		case "dev":
			e.Listen = devAddr
			e.Replicas = 2
			e.Smoke.Command = SmokeCommand
			// Both new replicas start at once: dev takes a push sooner.
			e.Rollout.MaxSurge = 2
		case "prod":
			e.Listen = prodAddr
			e.Replicas = 4
		}
		e.Rollout.GracePeriod = 10 * time.Second
	}
	return c
}

// makeRepository makes the bare repository holding the sample service as
// one commit on master, with release at the same commit.
func makeRepository(ctx context.Context, bare string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(bare), ".app-src-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := appsource.Unpack(appArchive, tmp); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	steps := [][]string{
		{"init", "--quiet", "--initial-branch=master"},
		{"add", "--all"},
		{"-c", "user.name=slipway demo", "-c", "user.email=demo@slipway.dev", "commit", "--quiet", "-m", "birthday-app: the sample service"},
		{"branch", "release"},
	}
	for _, args := range steps {
		if _, err := git(ctx, tmp, args...); err != nil {
			return fmt.Errorf("demo: make the app repository: %w", err)
		}
	}
	if _, err := git(ctx, filepath.Dir(bare), "clone", "--quiet", "--bare", tmp, bare); err != nil {
		return fmt.Errorf("demo: make %s: %w", bare, err)
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C",
		"GIT_AUTHOR_DATE=2018-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2018-01-01T00:00:00Z")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %s: %w", strings.Join(args, " "), strings.TrimSpace(stderr.String()), err)
	}
	return string(out), nil
}
