package apps

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
)

// Leftovers are the apps and environments that have deployments in the
// ledger (not removed since) and are no longer in the configuration.
func (a *Apps) Leftovers(ctx context.Context) ([]api.Leftover, error) {
	refs, err := a.opts.Store.DeployedEnvs(ctx)
	if err != nil {
		return nil, err
	}
	return FindLeftovers(a.opts.Set, refs), nil
}

// FindLeftovers returns what of refs (the ledger's deployed environments)
// set no longer configures: whole apps, then environments of configured
// apps.
func FindLeftovers(set *config.Set, refs []ledger.EnvRef) []api.Leftover {
	out := []api.Leftover{}
	seenApp := map[string]bool{}
	for _, r := range refs {
		cfg, configured := set.App(r.App)
		switch {
		case !configured && !seenApp[r.App]:
			seenApp[r.App] = true
			out = append(out, api.Leftover{App: r.App})
		case configured:
			if _, ok := cfg.Environment(r.Env); !ok {
				out = append(out, api.Leftover{App: r.App, Env: r.Env})
			}
		}
	}
	return out
}

// RemoveCommand is the command that removes l.
func RemoveCommand(l api.Leftover) string {
	if l.Env == "" {
		return "slipway remove --app " + l.App
	}
	return "slipway remove --app " + l.App + " --env " + l.Env
}

// ReportLeftovers logs what left the configuration and how to remove it.
func (a *Apps) ReportLeftovers(ctx context.Context) {
	left, err := a.Leftovers(ctx)
	if err != nil {
		a.log.Warn("look for apps and environments that left the configuration", "err", err)
		return
	}
	for _, l := range left {
		if l.Env == "" {
			a.log.Warn("app no longer configured; its environments keep running until removed",
				"app", l.App, "remove", RemoveCommand(l))
			continue
		}
		a.log.Warn("environment no longer configured; it keeps running until removed",
			"app", l.App, "env", l.Env, "remove", RemoveCommand(l))
	}
}

// Remove stops and deletes what a leftover app or environment left: its
// replicas and load balancer always; its data (the local runtime's
// database) and its registry tags when asked. Its ledger rows stay as
// history. What is still configured is refused.
func (a *Apps) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	if app, ok := a.names[req.App]; ok {
		if req.Env == "" {
			return api.RemoveReport{}, fmt.Errorf("remove %s: the app is in the configuration; take it out of %s first: %w", req.App, app.Config.File(), api.ErrStillConfigured)
		}
		if _, ok := app.Config.Environment(req.Env); ok {
			return api.RemoveReport{}, fmt.Errorf("remove %s of %s: the environment is in the configuration; take it out first (slipway stop %s only stops it): %w", req.Env, req.App, req.Env, api.ErrStillConfigured)
		}
	}
	left, err := a.Leftovers(ctx)
	if err != nil {
		return api.RemoveReport{}, err
	}
	var envs []string
	known := false
	for _, l := range left {
		if l.App != req.App {
			continue
		}
		known = true
		if l.Env == req.Env || req.Env == "" {
			envs = append(envs, l.Env)
		}
	}
	if req.Env == "" {
		envs, err = a.ledgerEnvs(ctx, req.App)
		if err != nil {
			return api.RemoveReport{}, err
		}
	}
	if !known || len(envs) == 0 {
		return api.RemoveReport{}, fmt.Errorf("remove %s: nothing of it is left (slipway remove with no --app lists what is): %w", strings.TrimSpace(req.App+" "+req.Env), api.ErrUnknownApp)
	}
	backend, reg, repository, err := a.leftoverParts(req.App)
	if err != nil {
		return api.RemoveReport{}, err
	}
	rep := api.RemoveReport{Removed: []string{}, Kept: []string{}}
	for _, env := range envs {
		if err := a.removeEnv(ctx, req, env, backend, reg, repository, &rep); err != nil {
			return rep, err
		}
	}
	if req.Env == "" && req.DeleteTags {
		if err := reg.Untag(ctx, repository, pipeline.LiveTag); err != nil {
			return rep, err
		}
		rep.Removed = append(rep.Removed, fmt.Sprintf("registry tag %s:%s", repository, pipeline.LiveTag))
	}
	if req.Env == "" {
		rep.Kept = append(rep.Kept, fmt.Sprintf("images of %s by digest, and release tags (RC…) in the registry and in git", repository))
	}
	rep.Kept = append(rep.Kept, "the ledger's history of "+req.App)
	a.log.Info("removed", "app", req.App, "env", req.Env, "removed", strings.Join(rep.Removed, "; "))
	return rep, nil
}

func (a *Apps) removeEnv(ctx context.Context, req api.RemoveRequest, env string, backend Backend, reg *registry.Client, repository string, rep *api.RemoveReport) error {
	what := fmt.Sprintf("%s of %s", env, req.App)
	switch err := backend.Stop(ctx, env); {
	case errors.Is(err, deploy.ErrNotDeployed):
		rep.Removed = append(rep.Removed, what+": nothing was running")
	case err != nil:
		return fmt.Errorf("remove %s: %w", what, err)
	default:
		rep.Removed = append(rep.Removed, what+": replicas and load balancer")
	}
	purger, local := backend.(*local.Backend)
	switch {
	case req.DeleteDatabase && local:
		dir, err := purger.Purge(ctx, env)
		if err != nil {
			return fmt.Errorf("remove %s: %w", what, err)
		}
		if dir != "" {
			rep.Removed = append(rep.Removed, what+": data directory with its database "+dir)
		}
	case req.DeleteDatabase:
		rep.Kept = append(rep.Kept, what+": its database (on kubernetes, DATABASE_URL points at a database slipway does not own)")
	case local:
		rep.Kept = append(rep.Kept, what+": its data directory and database (--delete-database removes them)")
	default:
		rep.Kept = append(rep.Kept, what+": its database")
	}
	tag := pipeline.EnvTag(env)
	if req.DeleteTags {
		if err := reg.Untag(ctx, repository, tag); err != nil {
			return fmt.Errorf("remove %s: %w", what, err)
		}
		rep.Removed = append(rep.Removed, fmt.Sprintf("registry tag %s:%s", repository, tag))
	} else {
		rep.Kept = append(rep.Kept, fmt.Sprintf("registry tag %s:%s (--delete-tags removes it)", repository, tag))
	}
	return a.opts.Store.MarkRemoved(ctx, req.App, env)
}

// ledgerEnvs lists every environment of app in the ledger.
func (a *Apps) ledgerEnvs(ctx context.Context, app string) ([]string, error) {
	return a.opts.Store.Deployments().ForApp(app).Envs(ctx)
}

// leftoverParts returns the runtime and registry of app: its own when it
// is configured, else those the configuration's first app uses.
func (a *Apps) leftoverParts(app string) (Backend, *registry.Client, string, error) {
	if p, ok := a.names[app]; ok {
		return p.Backend, p.Registry, p.Repository, nil
	}
	tmpl := *a.list[0].Config
	tmpl.App = app
	tmpl.Environments = nil
	reg := registry.NewClient(registry.Insecure(tmpl.Registry.Insecure))
	b, err := a.backend(&tmpl, reg, a.log.With("app", app))
	if err != nil {
		return nil, nil, "", err
	}
	return b, reg, tmpl.ImageRepository(a.opts.RegistryAddr), nil
}
