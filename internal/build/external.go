package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/schema"
)

// This file is the build of an app whose images are made elsewhere
// (build.kind: image): the team's CI pushes an image labelled with its
// commit, and either tells slipway (Import, from the API) or slipway finds
// it (Import, from the watch of a repository). Import checks the image and
// copies it, by digest, to REPOSITORY:sha-COMMIT; a build of the commit
// waits for that tag instead of testing and compiling.

// StepWaiting is the step of a build waiting for an image from CI.
const StepWaiting = "waiting for the image from CI"

// ErrRefused is the error of an image Import does not take; its message
// says why.
var ErrRefused = errors.New("image refused")

// ErrNotPushed is wrapped, with ErrRefused, by the error of an image
// reference the registry does not resolve (yet).
var ErrNotPushed = errors.New("no such image")

// ImportRequest is an image from CI.
type ImportRequest struct {
	// Image is the image's reference: REPOSITORY:TAG or REPOSITORY@DIGEST.
	Image string
	// Commit is the commit the image was built from; empty: the one its
	// org.opencontainers.image.revision label names. When set, the label
	// must name it too.
	Commit string
	// Branch is the branch the commit must be on.
	Branch string
	// Trigger says who sent it (api, registry watch).
	Trigger string
}

// Imported is an image Import took.
type Imported struct {
	Commit string `json:"commit"`
	Digest string `json:"digest"`
	Image  string `json:"image"` // REPOSITORY@sha256:…, where the chain takes it from
	Source string `json:"source"`
	// Already is true when the image had been imported before.
	Already bool `json:"already,omitempty"`
}

// arrivals wakes the builds waiting for images whenever one is imported.
type arrivals struct {
	mu sync.Mutex
	ch chan struct{}
}

func (a *arrivals) wait() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ch == nil {
		a.ch = make(chan struct{})
	}
	return a.ch
}

func (a *arrivals) broadcast() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ch != nil {
		close(a.ch)
		a.ch = nil
	}
}

// source is the registry client for images from CI.
func (b *Builder) source() *registry.Client {
	if b.CIRegistry != nil {
		return b.CIRegistry
	}
	return b.Registry
}

// Import checks an image from CI and copies it to the app's repository as
// sha-COMMIT. It is refused (ErrRefused) when the image has no revision
// label or one that differs from req.Commit, is not for this machine's
// platform, names a commit not on req.Branch, or when another image has
// been imported for that commit already (a tag that moved).
func (b *Builder) Import(ctx context.Context, req ImportRequest) (Imported, error) {
	ref, err := name.ParseReference(req.Image, b.nameOptions()...)
	if err != nil {
		return Imported{}, fmt.Errorf("%w: %q is not an image reference, such as ghcr.io/org/app:sha-COMMIT or …@sha256:…: %v", ErrRefused, req.Image, err)
	}
	src := b.source()
	repo := ref.Context().String()
	digest, err := src.Digest(ctx, repo, ref.Identifier())
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return Imported{}, fmt.Errorf("%w: %s does not exist: push it first: %w", ErrRefused, req.Image, ErrNotPushed)
		}
		return Imported{}, fmt.Errorf("%w: look up %s: %w", ErrPush, req.Image, err)
	}
	img, err := src.Image(ctx, repo, digest)
	if err != nil {
		return Imported{}, fmt.Errorf("%w: read %s: %w", ErrPush, req.Image, err)
	}
	// An index resolves to this platform's image: its digest is the one
	// that runs.
	if digest, err = img.Digest(); err != nil {
		return Imported{}, fmt.Errorf("digest of %s: %w", req.Image, err)
	}
	commit, err := b.checkImage(ctx, img, req)
	if err != nil {
		return Imported{}, err
	}
	out := Imported{Commit: commit, Digest: digest.String(), Image: b.Repository + "@" + digest.String(), Source: req.Image}
	shaTag := "sha-" + commit
	have, err := b.Registry.Digest(ctx, b.Repository, shaTag)
	switch {
	case err == nil && have == digest:
		out.Already = true
		return out, nil
	case err == nil:
		return Imported{}, fmt.Errorf("%w: %s:%s is %s already; the image of a commit is never replaced (a tag that moved?): push a new commit instead",
			ErrRefused, b.Repository, shaTag, have)
	case !errors.Is(err, registry.ErrNotFound):
		return Imported{}, fmt.Errorf("%w: check %s:%s: %w", ErrPush, b.Repository, shaTag, err)
	}
	if _, err := b.Registry.Push(ctx, b.Repository, img, commit[:7], shaTag); err != nil {
		return Imported{}, fmt.Errorf("%w: copy %s to %s: %w", ErrPush, req.Image, b.Repository, err)
	}
	_, err = b.Ledger.AddEvent(ctx, ledger.Event{Kind: ledger.EventBuild, Commit: commit, Digest: digest.String(),
		Trigger: req.Trigger, Outcome: ledger.OutcomeSucceeded, Message: "image from CI: " + req.Image})
	if err != nil {
		b.logger().Error("record imported image", "commit", commit, "err", err)
	}
	b.logger().Info("image from CI", "commit", commit[:7], "image", out.Image, "from", req.Image, "trigger", req.Trigger)
	b.arrived.broadcast()
	return out, nil
}

func (b *Builder) nameOptions() []name.Option {
	if b.CIInsecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// checkImage returns the commit img was built from, checked against req
// and the repository.
func (b *Builder) checkImage(ctx context.Context, img v1.Image, req ImportRequest) (string, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("%w: read the configuration of %s: %w", ErrPush, req.Image, err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		return "", fmt.Errorf("%w: %s is built for %s/%s; this machine runs linux/%s: build it for that platform (docker buildx --platform linux/%s)",
			ErrRefused, req.Image, cf.OS, cf.Architecture, runtime.GOARCH, runtime.GOARCH)
	}
	if len(cf.Config.Entrypoint)+len(cf.Config.Cmd) == 0 {
		return "", fmt.Errorf("%w: %s has neither entrypoint nor cmd: build it with one (ENTRYPOINT or CMD)", ErrRefused, req.Image)
	}
	label := cf.Config.Labels[LabelRevision]
	switch {
	case label == "":
		return "", fmt.Errorf("%w: %s has no %s label naming its commit: build it with --label %s=$(git rev-parse HEAD)",
			ErrRefused, req.Image, LabelRevision, LabelRevision)
	case req.Commit != "" && label != req.Commit:
		return "", fmt.Errorf("%w: %s was built from %s (its %s label), not %s", ErrRefused, req.Image, label, LabelRevision, req.Commit)
	}
	if _, _, err := schema.FromLabels(cf.Config.Labels); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrRefused, req.Image, err)
	}
	commit, err := b.resolveCommit(ctx, label)
	if err != nil {
		return "", fmt.Errorf("%w: %s names commit %s: %w", ErrRefused, req.Image, label, err)
	}
	if commit != label {
		return "", fmt.Errorf("%w: %s names commit %q: give the full commit hash in the label", ErrRefused, req.Image, label)
	}
	head, err := b.Source.Head(ctx, req.Branch)
	if err != nil {
		return "", err
	}
	on, err := b.Source.IsAncestor(ctx, commit, head)
	if err != nil {
		return "", err
	}
	if head == "" || !on {
		return "", fmt.Errorf("%w: %s was built from %s, which is not on %s of %s", ErrRefused, req.Image, commit[:min(7, len(commit))], req.Branch, b.Source.URL())
	}
	return commit, nil
}

// resolveCommit resolves a commit, fetching first when the repository does
// not have it yet.
func (b *Builder) resolveCommit(ctx context.Context, commit string) (string, error) {
	c, err := b.Source.Resolve(ctx, commit)
	if errors.Is(err, gitsource.ErrUnknownRevision) {
		if ferr := b.Source.Fetch(ctx); ferr != nil {
			return "", ferr
		}
		c, err = b.Source.Resolve(ctx, commit)
	}
	return c, err
}

// awaitImage is the build of commit for an app whose images come from CI:
// it waits until Import has put REPOSITORY:sha-COMMIT there, or until
// build.image.wait has passed.
func (b *Builder) awaitImage(ctx context.Context, row *ledger.Build, commit string) (v1.Hash, error) {
	logPath := filepath.Join(b.DataDir, "logs", "builds", fmt.Sprintf("%d-%s.log", row.ID, commit))
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return v1.Hash{}, fmt.Errorf("make log directory: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()
	row.LogPath = logPath
	if err := b.setState(ctx, row, ledger.BuildQueued); err != nil {
		return v1.Hash{}, err
	}
	steps := &steps{short: commit[:7], build: row.ID, log: logFile, out: b.Progress, logger: b.logger()}
	shaTag := "sha-" + commit
	wait := b.Build.Image.WaitFor()
	how := fmt.Sprintf("POST /api/v1/apps/%s/builds", b.App)
	if b.Build.Image.Watch != "" {
		how = fmt.Sprintf("push %s:TAG (tags %s) or %s", b.Build.Image.Watch, b.Build.Image.ImageTags(), how)
	}
	st := steps.start(StepWaiting, how)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		arrived := b.arrived.wait()
		d, err := b.Registry.Digest(ctx, b.Repository, shaTag)
		switch {
		case err == nil:
			st.end("image from CI", b.Repository+"@"+d.String(), "")
			row.State, row.Digest, row.Reason = ledger.BuildPushed, d.String(), "image from CI"
			if row.Schema, err = b.imageSchema(ctx, d); err != nil {
				st.fail()
				return v1.Hash{}, err
			}
			if err := b.Ledger.UpdateBuild(ctx, row); err != nil {
				return v1.Hash{}, err
			}
			return d, nil
		case !errors.Is(err, registry.ErrNotFound):
			b.logger().Warn("look for the image from CI", "commit", commit[:7], "err", err)
		}
		select {
		case <-ctx.Done():
			st.fail()
			return v1.Hash{}, ctx.Err()
		case <-deadline.C:
			st.fail()
			return v1.Hash{}, fmt.Errorf("no image of %s came from CI within %s (build.image.wait): %s, with the %s label", commit[:7], wait, how, LabelRevision)
		case <-arrived:
		case <-time.After(2 * time.Second): // an import by another process
		}
	}
}
