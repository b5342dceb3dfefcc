package apps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
)

// This file fits slipway's real parts to the interfaces the controller
// declares.

// GitRepo is the app's repository through its mirror. Operations that
// change the mirror (fetch, branch moves, tags) take turns: a fetch prunes
// tags the repository does not have yet, and git locks refs it updates. A
// remote that does not answer is a transient error.
//
// A repository on this machine is fetched only when its refs changed or
// once every fullFetchEvery: with many apps polling every few seconds, an
// idle controller runs no git at all. Watched repositories (see
// Apps.watchRefs) are marked stale by the watch; others are compared by
// gitsource.RefsStamp at each fetch.
//
// Branch heads are read once per change of the mirror, and commit lists
// (fixed for a pair of commits) once: status asks for them often.
type GitRepo struct {
	*gitsource.Source
	mu        sync.Mutex
	stamp     string      // the refs' stamp at the last fetch that succeeded
	fetchedAt time.Time   // when
	stale     atomic.Bool // the next Fetch fetches, whatever the stamp says
	watched   atomic.Bool // a watch marks the repository stale when its refs move

	cacheMu sync.Mutex
	heads   map[string]string
	gen     int // counts changes of the mirror: a head read across one is not kept
	logs    map[logKey][]pipeline.Commit
}

type logKey struct {
	exclude, include string
	limit            int
}

// maxCachedLogs bounds the commit lists kept.
const maxCachedLogs = 64

// MarkStale makes the next Fetch fetch: someone (a push webhook) says the
// repository changed.
func (g *GitRepo) MarkStale() { g.stale.Store(true) }

// forgetHeads drops the branch heads read before the mirror changed.
func (g *GitRepo) forgetHeads() {
	g.cacheMu.Lock()
	g.heads = nil
	g.gen++
	g.cacheMu.Unlock()
}

// Head returns the commit branch points at in the mirror ("" when it does
// not exist). Every branch is read at once, after each change of the
// mirror, in one git process.
func (g *GitRepo) Head(ctx context.Context, branch string) (string, error) {
	g.cacheMu.Lock()
	heads, gen := g.heads, g.gen
	g.cacheMu.Unlock()
	if heads != nil {
		return heads[branch], nil
	}
	heads, err := g.Source.Heads(ctx)
	if err != nil {
		return "", err
	}
	g.cacheMu.Lock()
	defer g.cacheMu.Unlock()
	if gen == g.gen {
		g.heads = heads // else the mirror changed meanwhile: read again next time
	}
	return heads[branch], nil
}

// fullFetchEvery bounds how long a repository on this machine goes without
// a fetch even when its refs look unchanged.
const fullFetchEvery = 30 * time.Second

var _ pipeline.Repo = (*GitRepo)(nil)

// transientIf marks err transient when it matches target.
func transientIf(err, target error) error {
	if err != nil && errors.Is(err, target) {
		return pipeline.Transient(err)
	}
	return err
}

// Fetch updates the mirror, unless a repository on this machine has not
// changed since the last fetch.
func (g *GitRepo) Fetch(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	stale := g.stale.Swap(false)
	watched := g.watched.Load()
	var (
		stamp string
		local bool
		err   error
	)
	if !watched {
		stamp, local, err = g.RefsStamp()
	}
	unchanged := watched || (local && err == nil && stamp == g.stamp)
	if !stale && unchanged && time.Since(g.fetchedAt) < fullFetchEvery {
		return nil
	}
	g.forgetHeads()
	if err := g.Source.Fetch(ctx); err != nil {
		if watched {
			g.stale.Store(true) // the watch saw a change not fetched yet
		}
		return transientIf(err, gitsource.ErrUnreachable)
	}
	g.forgetHeads()
	g.stamp, g.fetchedAt = stamp, time.Now()
	return nil
}

// MoveBranch moves a branch of the repository.
func (g *GitRepo) MoveBranch(ctx context.Context, branch, from, to string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.forgetHeads()
	return transientIf(g.Source.MoveBranch(ctx, branch, from, to), gitsource.ErrUnreachable)
}

// TagRelease tags a release in the repository.
func (g *GitRepo) TagRelease(ctx context.Context, name, commit, message string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return transientIf(g.Source.TagRelease(ctx, name, commit, message), gitsource.ErrUnreachable)
}

// Commits lists commits through git log; the list of a pair of commits
// never changes, so it is kept.
func (g *GitRepo) Commits(ctx context.Context, exclude, include string, limit int) ([]pipeline.Commit, error) {
	key := logKey{exclude, include, limit}
	g.cacheMu.Lock()
	list, ok := g.logs[key]
	g.cacheMu.Unlock()
	if ok {
		return slices.Clone(list), nil
	}
	entries, err := g.Log(ctx, exclude, include, limit)
	if err != nil {
		return nil, err
	}
	out := make([]pipeline.Commit, 0, len(entries))
	for _, e := range entries {
		out = append(out, pipeline.Commit{Hash: e.Hash, Short: short(e.Hash), Subject: e.Subject, Author: e.Author, Time: e.Time})
	}
	g.cacheMu.Lock()
	if g.logs == nil || len(g.logs) >= maxCachedLogs {
		g.logs = map[logKey][]pipeline.Commit{}
	}
	g.logs[key] = out
	g.cacheMu.Unlock()
	return slices.Clone(out), nil
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// ImageBuilder builds with slipway's builder, at most as many builds at
// once (of every app) as slots holds. A push that failed is transient.
type ImageBuilder struct {
	Builder *build.Builder
	Slots   chan struct{}
}

// Build tests and builds commit, or returns its existing image.
func (b ImageBuilder) Build(ctx context.Context, commit string, check func(context.Context, string) error) (pipeline.Image, error) {
	// A build waiting for an image from CI takes no slot: it runs nothing.
	if b.Slots != nil && !b.Builder.Build.ImagesFromCI() {
		select {
		case b.Slots <- struct{}{}:
			defer func() { <-b.Slots }()
		case <-ctx.Done():
			return pipeline.Image{}, ctx.Err()
		}
	}
	res, err := b.Builder.Run(ctx, build.Request{Rev: commit, Trigger: "controller", NoFetch: true, Check: check})
	if err != nil {
		return pipeline.Image{}, transientIf(err, build.ErrPush)
	}
	return pipeline.Image{Ref: res.Reference(), Digest: res.Digest.String(), Schema: res.Build.Schema}, nil
}

// RegistryTagger tags images of one repository; a registry that does not
// answer is a transient error.
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
	if err := r.Client.Tag(ctx, r.Repository, tag, h); err != nil {
		return pipeline.Transient(err)
	}
	return nil
}

// Runtime deploys through a deploy.Backend, with each environment's settings
// from the configuration.
type Runtime struct {
	Backend deploy.Backend
	Config  *config.Config
	// Images reads the configuration of the images deployed (see
	// SpecFor); nil: the spec's port is build.port's.
	Images *registry.Client
}

// Spec is the desired state of d's environment.
func (r Runtime) Spec(d ledger.Deployment) (deploy.Spec, error) {
	e, ok := r.Config.Environment(d.Env)
	if !ok {
		return deploy.Spec{}, fmt.Errorf("deploy %s: %w", d.Env, pipeline.ErrUnknownEnv)
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
		version = short(d.Commit)
	}
	res, err := replicaResources(e)
	if err != nil {
		return deploy.Spec{}, fmt.Errorf("deploy %s: %w", d.Env, err)
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
		Cause:     fmt.Sprintf("%s %d (%s)", d.Kind, d.ID, d.Trigger),
		Resources: res,
		Secrets:   secretRefs(e.Secrets),
	}, nil
}

// replicaResources are the limits of each replica of e.
func replicaResources(e config.Environment) (deploy.Resources, error) {
	lim := e.ReplicaLimits()
	mem, err := lim.MemoryBytes()
	if err != nil {
		return deploy.Resources{}, err
	}
	cpu, err := lim.MilliCPU()
	if err != nil {
		return deploy.Resources{}, err
	}
	return deploy.Resources{MemoryBytes: mem, MilliCPU: cpu, Pids: int64(lim.Pids)}, nil
}

// secretRefs are where the runtime reads the values of secrets: the
// references only.
func secretRefs(secrets map[string]config.Secret) map[string]deploy.SecretRef {
	if len(secrets) == 0 {
		return nil
	}
	out := make(map[string]deploy.SecretRef, len(secrets))
	for k, s := range secrets {
		out[k] = deploy.SecretRef{Env: s.Env, File: s.File}
	}
	return out
}

// Deploy applies d's spec.
func (r Runtime) Deploy(ctx context.Context, d ledger.Deployment) error {
	spec, err := r.SpecFor(ctx, d)
	if err != nil {
		return err
	}
	// A runtime that stopped answering (a supervisor that died) is tried
	// again: the next try starts a new one.
	return transientIf(r.Backend.Apply(ctx, spec), deploy.ErrUnavailable)
}

// Status is the runtime's report of env.
func (r Runtime) Status(ctx context.Context, env string) (deploy.Status, error) {
	return r.Backend.Status(ctx, env)
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
