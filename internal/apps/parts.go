package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

// This file fits slipway's real parts to the interfaces the controller
// declares.

// GitRepo is the app's repository through its mirror. Operations that
// change the mirror (fetch, branch moves, tags) take turns: a fetch prunes
// tags the repository does not have yet, and git locks refs it updates.
type GitRepo struct {
	*gitsource.Source
	mu sync.Mutex
}

var _ Repo = (*GitRepo)(nil)

// Fetch updates the mirror.
func (g *GitRepo) Fetch(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Source.Fetch(ctx)
}

// MoveBranch moves a branch of the repository.
func (g *GitRepo) MoveBranch(ctx context.Context, branch, from, to string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Source.MoveBranch(ctx, branch, from, to)
}

// TagRelease tags a release in the repository.
func (g *GitRepo) TagRelease(ctx context.Context, name, commit, message string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Source.TagRelease(ctx, name, commit, message)
}

// Commits lists commits through git log.
func (g *GitRepo) Commits(ctx context.Context, exclude, include string, limit int) ([]Commit, error) {
	entries, err := g.Log(ctx, exclude, include, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Commit, 0, len(entries))
	for _, e := range entries {
		out = append(out, Commit{Hash: e.Hash, Short: shortHash(e.Hash), Subject: e.Subject, Author: e.Author, Time: e.Time})
	}
	return out, nil
}

// ImageBuilder builds with slipway's builder.
type ImageBuilder struct{ *build.Builder }

// Build tests and builds commit, or returns its existing image.
func (b ImageBuilder) Build(ctx context.Context, commit string) (Image, error) {
	res, err := b.Run(ctx, build.Request{Rev: commit, Trigger: "controller", NoFetch: true})
	if err != nil {
		return Image{}, err
	}
	return Image{Ref: res.Reference(), Digest: res.Digest.String()}, nil
}

// RegistryTagger tags images of one repository.
type RegistryTagger struct {
	Client     *registry.Client
	Repository string
}

// Tag points Repository:tag at digest.
func (r RegistryTagger) Tag(ctx context.Context, digest, tag string) error {
	h, err := v1.NewHash(digest)
	if err != nil {
		return fmt.Errorf("tag %s: digest %q: %w", tag, digest, err)
	}
	return r.Client.Tag(ctx, r.Repository, tag, h)
}

// Runtime deploys through a deploy.Backend, with each environment's settings
// from the configuration.
type Runtime struct {
	Backend deploy.Backend
	Config  *config.Config
}

// Spec is the desired state of d's environment.
func (r Runtime) Spec(d ledger.Deployment) (deploy.Spec, error) {
	e, ok := r.Config.Environment(d.Env)
	if !ok {
		return deploy.Spec{}, fmt.Errorf("deploy %s: %w", d.Env, ErrUnknownEnv)
	}
	env := map[string]string{}
	for k, v := range e.Env {
		env[k] = v
	}
	if u := r.Config.DatabaseURL(e); u != "" {
		env["DATABASE_URL"] = u
	}
	version := d.ReleaseName
	if version == "" {
		version = shortHash(d.Commit)
	}
	return deploy.Spec{
		Environment:   d.Env,
		App:           r.Config.App,
		Image:         d.Image,
		Commit:        d.Commit,
		Version:       version,
		Replicas:      d.Replicas,
		Port:          r.Config.Build.Port,
		Env:           env,
		ListenAddr:    e.Listen,
		Frontend:      frontendSpec(e.Frontend),
		ReadinessPath: e.ReadinessPath,
		LivenessPath:  e.LivenessPath,
		Strategy: deploy.Strategy{
			MaxSurge:               e.Rollout.MaxSurge,
			MaxUnavailable:         e.Rollout.MaxUnavailable,
			ReadyTimeout:           e.Rollout.ReadyTimeout,
			TerminationGracePeriod: e.Rollout.GracePeriod,
		},
		Cause: fmt.Sprintf("%s %d (%s)", d.Kind, d.ID, d.Trigger),
	}, nil
}

// Deploy applies d's spec.
func (r Runtime) Deploy(ctx context.Context, d ledger.Deployment) error {
	spec, err := r.Spec(d)
	if err != nil {
		return err
	}
	return r.Backend.Apply(ctx, spec)
}

// Health reads the environment's status; nothing deployed is Desired 0.
func (r Runtime) Health(ctx context.Context, env string) (Health, error) {
	st, err := r.Backend.Status(ctx, env)
	if errors.Is(err, deploy.ErrNotDeployed) {
		return Health{}, nil
	}
	if err != nil {
		return Health{}, err
	}
	h := Health{Ready: st.Replicas.Ready, Desired: st.Replicas.Desired, Healthy: st.Healthy,
		Isolation: string(st.Isolation), Message: st.Message, Instances: []Instance{}, URL: st.URL}
	for _, r := range st.Instances {
		h.Instances = append(h.Instances, Instance{Name: r.Name, Commit: r.Commit, State: r.State, Ready: r.Ready,
			Restarts: r.Restarts, Since: r.Since, Message: r.Message})
	}
	return h, nil
}

// CommandSmoker runs each environment's smoke-test command (through
// /bin/sh -c) in a clean checkout of the commit, with SLIPWAY_URL set.
type CommandSmoker struct {
	Source *gitsource.Source
	Config *config.Config
	// Dir holds the checkouts (Dir/smoke/…) and logs (Dir/logs/smoke/…).
	Dir string
}

// Smoke runs env's smoke test against url; no command means no test.
func (s CommandSmoker) Smoke(ctx context.Context, env, commit, url string) error {
	e, ok := s.Config.Environment(env)
	if !ok || strings.TrimSpace(e.Smoke.Command) == "" {
		return nil
	}
	work := filepath.Join(s.Dir, "smoke", env)
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("smoke test: clear %s: %w", work, err)
	}
	if err := os.MkdirAll(filepath.Dir(work), 0o755); err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	if err := s.Source.Checkout(ctx, commit, work); err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	logDir := filepath.Join(s.Dir, "logs", "smoke")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	logPath := filepath.Join(logDir, env+"-"+commit+".log")
	timeout := e.Smoke.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", e.Smoke.Command)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "SLIPWAY_URL="+url, "SLIPWAY_ENV="+env, "SLIPWAY_COMMIT="+commit)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	_ = os.WriteFile(logPath, out.Bytes(), 0o644)
	if err != nil {
		if cctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return fmt.Errorf("%q: %w; last lines (full log %s):\n%s", e.Smoke.Command, err, logPath, tail(out.String(), 15))
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// frontendSpec is what the runtime needs of an environment's front end.
func frontendSpec(f config.Frontend) deploy.Frontend {
	out := deploy.Frontend{
		MaxHeaderBytes: f.MaxHeaderBytes,
		HeaderTimeout:  f.HeaderTimeout,
		BodyTimeout:    f.BodyTimeout,
		WriteTimeout:   f.WriteTimeout,
		IdleTimeout:    f.IdleTimeout,
		MaxConnections: f.MaxConnections,
		TrustedProxies: f.TrustedProxies,
	}
	if t := f.TLS; t.Enabled() {
		out.TLS = &deploy.TLS{
			CertFile:      t.CertFile,
			KeyFile:       t.KeyFile,
			ACMEDomains:   t.ACME.Domains,
			ACMEEmail:     t.ACME.Email,
			ACMEDirectory: t.ACME.Directory,
			ACMECAFile:    t.ACME.CAFile,
			RedirectFrom:  t.RedirectFrom,
		}
	}
	return out
}
