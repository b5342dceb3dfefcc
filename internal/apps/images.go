package apps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/registry"
)

// This file takes the images of apps built elsewhere (build.kind: image):
// from the API (the CI calls POST /api/v1/apps/{app}/builds) and from the
// watch of an image repository.

// sourceBranch is the branch an app's images must be built from: that of
// its first environment fed by a branch.
func sourceBranch(cfg *config.Config) string {
	for _, e := range cfg.Environments {
		if e.Branch != "" && e.From == "" && e.Mode == config.ModeAutomatic {
			return e.Branch
		}
	}
	return "master"
}

// ImportImage takes an image the app's CI built.
func (p *App) ImportImage(ctx context.Context, req api.BuildRequest) (api.ImportedBuild, error) {
	if !p.Config.Build.ImagesFromCI() {
		return api.ImportedBuild{}, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict,
			Message: fmt.Sprintf("%s builds its own images (build.kind: go): set build.kind: image in its configuration to take images from CI", p.Config.App)}
	}
	if req.Image == "" {
		return api.ImportedBuild{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalid,
			Message: `"image" is required: the image CI pushed, such as ghcr.io/org/app:sha-COMMIT or ghcr.io/org/app@sha256:…`}
	}
	imp, err := p.builder.Import(ctx, build.ImportRequest{Image: req.Image, Commit: req.Commit, Branch: sourceBranch(p.Config), Trigger: "api"})
	if err != nil {
		if errors.Is(err, build.ErrRefused) {
			return api.ImportedBuild{}, &api.Error{Status: http.StatusConflict, Code: api.CodeRefused, Message: err.Error()}
		}
		return api.ImportedBuild{}, err
	}
	p.Controller.Poll()
	return api.ImportedBuild(imp), nil
}

// ciRegistry returns the registry client for cfg's images from CI.
func ciRegistry(cfg *config.Config, reg *registry.Client) *registry.Client {
	if cfg.Build.Image.Insecure {
		return registry.NewClient(registry.Insecure(true))
	}
	return reg
}

// watchImages lists the app's build.image.watch repository every
// build.image.interval and imports each new tag that matches
// build.image.tags. A tag is read once: a refused image is logged and not
// tried again until slipway restarts; one that could not be read is tried
// at the next listing, and so is a listed tag that does not resolve yet (a
// registry may list a tag while its push is still being written).
func (p *App) watchImages(ctx context.Context) {
	src := p.Config.Build.Image
	if !p.Config.Build.ImagesFromCI() || src.Watch == "" {
		return
	}
	log := p.builder.Logger.With("watch", src.Watch)
	seen := map[string]bool{}
	t := time.NewTicker(src.WatchInterval())
	defer t.Stop()
	for {
		p.importNewTags(ctx, seen, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *App) importNewTags(ctx context.Context, seen map[string]bool, log *slog.Logger) {
	src := p.Config.Build.Image
	tags, err := p.builder.CIRegistry.Tags(ctx, src.Watch)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, registry.ErrNotFound) {
			log.Warn("list the tags of the image repository", "err", err)
		}
		return
	}
	imported := false
	for _, tag := range tags {
		if ok, _ := path.Match(src.ImageTags(), tag); !ok || seen[tag] {
			continue
		}
		imp, err := p.builder.Import(ctx, build.ImportRequest{Image: src.Watch + ":" + tag, Branch: sourceBranch(p.Config), Trigger: "registry watch"})
		switch {
		case err == nil:
			seen[tag] = true
			imported = imported || !imp.Already
		case errors.Is(err, build.ErrNotPushed):
			log.Info("listed tag not readable yet; trying it at the next listing", "tag", tag)
		case errors.Is(err, build.ErrRefused):
			seen[tag] = true
			log.Warn("image refused", "tag", tag, "err", err)
		case ctx.Err() == nil:
			log.Warn("import image", "tag", tag, "err", err)
		}
	}
	if imported {
		p.Controller.Poll()
	}
}
