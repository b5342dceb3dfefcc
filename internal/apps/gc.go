package apps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/gc"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

// This file collects the images of an app that nothing needs (docs/gc.md):
// the rule is internal/gc's; here are the facts it is applied to and the
// deletions: manifests through the registry's API, then the embedded
// registry's blobs swept, then the local runtime's unpacked images.

// collector is what the apps of one controller share for collecting: one
// collection at a time (the sweep covers the whole embedded registry),
// and the embedded registry when there is one.
type collector struct {
	mu       sync.Mutex
	embedded *registry.Embedded
	log      *slog.Logger
}

func (a *Apps) collector() *collector {
	a.gcOnce.Do(func() {
		a.gc = &collector{embedded: a.opts.Embedded, log: a.log.With("component", "gc")}
	})
	return a.gc
}

// GC collects the app's images, or with dryRun says what it would delete
// and why each kept image is kept.
func (p *App) GC(ctx context.Context, dryRun bool) (gc.Report, error) {
	c := p.collect
	c.mu.Lock()
	defer c.mu.Unlock()
	rep := gc.Report{App: p.Config.App, DryRun: dryRun}
	start := time.Now()
	facts, err := p.gcFacts(ctx)
	if err != nil {
		return rep, err
	}
	rep.Plan = gc.Make(facts)
	if !dryRun {
		p.deleteImages(ctx, &rep)
		if c.embedded != nil && p.Config.Registry.Embedded() {
			sw, err := c.embedded.Sweep(ctx, registry.SweepGrace)
			rep.Blobs, rep.BlobBytes, rep.KeptYoung = sw.Blobs, sw.Bytes, sw.Kept
			if err != nil {
				rep.Errors = append(rep.Errors, err.Error())
			}
		}
	}
	if be, ok := p.Backend.(*local.Backend); ok {
		keep, err := p.unpackedToKeep(ctx)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		} else {
			pr, err := be.PruneImages(ctx, keep, dryRun)
			rep.Unpacked, rep.UnpackedBytes = pr.Digests, pr.Bytes
			if err != nil {
				rep.Errors = append(rep.Errors, err.Error())
			}
		}
	}
	verb := "collected"
	if dryRun {
		verb = "would collect"
	}
	c.log.Info(verb, "app", p.Config.App, "kept", len(rep.Keep), "deleted", len(rep.Deleted), "planned", len(rep.Delete),
		"blobs", rep.Blobs, "blobBytes", rep.BlobBytes, "unpacked", len(rep.Unpacked), "unpackedBytes", rep.UnpackedBytes,
		"errors", len(rep.Errors), "took", time.Since(start).Round(time.Millisecond))
	return rep, nil
}

// gcFacts reads what the rule needs: the app's builds, its deployments,
// and its repository's tags.
func (p *App) gcFacts(ctx context.Context) (gc.Facts, error) {
	f := gc.Facts{KeepBuilds: p.Config.GC.Keep(), Tags: map[string]string{}}
	builds, err := p.store.ListBuilds(ctx, ledger.BuildFilter{App: p.Config.App, State: ledger.BuildPushed, Limit: 1 << 30})
	if err != nil {
		return f, err
	}
	for _, b := range builds {
		if b.Digest != "" {
			f.Builds = append(f.Builds, gc.Build{ID: b.ID, Commit: b.Commit, Digest: b.Digest})
		}
	}
	controlled := map[string]bool{}
	for _, e := range p.Config.Environments {
		controlled[e.Name] = e.Mode == config.ModeControlled
	}
	uses, err := p.deps.DigestUses(ctx)
	if err != nil {
		return f, err
	}
	current := map[string]string{}
	for _, e := range p.Config.Environments {
		d, err := p.deps.Current(ctx, e.Name)
		if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
			return f, err
		}
		current[e.Name] = d.Digest
	}
	for _, u := range uses {
		f.Uses = append(f.Uses, gc.Use{Env: u.Env, Controlled: controlled[u.Env], Digest: u.Digest, State: string(u.State),
			Release: u.Release, Current: current[u.Env] == u.Digest && u.State == ledger.StateSucceeded})
	}
	tags, err := p.Registry.Tags(ctx, p.Repository)
	if err != nil {
		return f, fmt.Errorf("list the tags of %s: %w", p.Repository, err)
	}
	for _, t := range tags {
		d, err := p.Registry.Digest(ctx, p.Repository, t)
		if errors.Is(err, registry.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return f, fmt.Errorf("read tag %s of %s: %w", t, p.Repository, err)
		}
		f.Tags[t] = d.String()
	}
	return f, nil
}

// deleteImages deletes the manifests of the plan, but any whose
// deployment started since the plan was made.
func (p *App) deleteImages(ctx context.Context, rep *gc.Report) {
	inFlight, err := p.deps.InFlight(ctx)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return
	}
	for _, it := range rep.Delete {
		if slices.ContainsFunc(inFlight, func(d ledger.Deployment) bool { return d.Digest == it.Digest }) {
			continue
		}
		h, err := v1.NewHash(it.Digest)
		if err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("image %s: %v", it.Digest, err))
			continue
		}
		if err := p.Registry.Delete(ctx, p.Repository, h); err != nil {
			rep.Errors = append(rep.Errors, err.Error())
			// A registry that refuses deletes refuses them all.
			return
		}
		rep.Deleted = append(rep.Deleted, it.Digest)
	}
}

// unpackedToKeep are the images whose unpacked files the local runtime
// keeps: what each environment runs, the one it ran before (a rollback
// starts without unpacking), and any deployment in flight.
func (p *App) unpackedToKeep(ctx context.Context) (map[string]bool, error) {
	keep := map[string]bool{}
	for _, e := range p.Config.Environments {
		rows, err := p.deps.Latest(ctx, e.Name, 50)
		if err != nil {
			return nil, err
		}
		ran := 0
		for _, d := range rows {
			switch {
			case !d.State.Final():
				keep[d.Digest] = true
			case d.State == ledger.StateSucceeded && ran < 2 && !keep[d.Digest]:
				keep[d.Digest] = true
				ran++
			}
		}
	}
	delete(keep, "")
	return keep, nil
}

// collectEvery collects the app's images every gc.interval, unless
// gc.disabled; the first time one interval after start.
func (p *App) collectEvery(ctx context.Context) {
	if p.Config.GC.Disabled {
		return
	}
	t := time.NewTicker(p.Config.GC.Every())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := p.GC(ctx, false)
		if err != nil && ctx.Err() == nil {
			p.collect.log.Error("collection failed", "app", p.Config.App, "err", err)
		}
		for _, e := range rep.Errors {
			p.collect.log.Warn("collection", "app", p.Config.App, "err", e)
		}
	}
}
