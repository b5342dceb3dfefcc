package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// singleApp serves one pipeline.Controller as the API's only app.
type singleApp struct {
	name, repo string
	ctl        *pipeline.Controller
	logs       deploy.LogSource // nil: the runtime keeps no logs
	builds     *ledger.Store
}

var (
	_ api.App  = (*singleApp)(nil)
	_ api.Apps = (*singleApp)(nil)
)

func (a *singleApp) Name() string    { return a.name }
func (a *singleApp) RepoURL() string { return a.repo }

func (a *singleApp) Status(ctx context.Context) (pipeline.Status, error) {
	st, err := a.ctl.Status(ctx)
	st.App = a.name
	return st, err
}

func (a *singleApp) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	return a.ctl.History(ctx, env, limit)
}

func (a *singleApp) Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error) {
	return a.ctl.Diff(ctx, from, to)
}

func (a *singleApp) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	return a.ctl.Deployment(ctx, id)
}

// controlled checks that env names the controlled environment ("" does).
func (a *singleApp) controlled(what, env string) error {
	if env == "" {
		return nil
	}
	for _, e := range a.ctl.Envs() {
		if !e.Automatic {
			if e.Name == env {
				return nil
			}
			return fmt.Errorf("%s %s: only %s is released and rolled back: %w", what, env, e.Name, pipeline.ErrInvalid)
		}
	}
	return pipeline.ErrNoControlledEnv
}

func (a *singleApp) Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error) {
	if err := a.controlled("release to", req.Env); err != nil {
		return ledger.Deployment{}, err
	}
	return a.ctl.Release(ctx, req)
}

func (a *singleApp) Rollback(ctx context.Context, req pipeline.RollbackRequest) (ledger.Deployment, error) {
	if err := a.controlled("roll back", req.Env); err != nil {
		return ledger.Deployment{}, err
	}
	return a.ctl.Rollback(ctx, req.Target, req.Trigger)
}

func (a *singleApp) Scale(ctx context.Context, env string, replicas int) (ledger.Deployment, error) {
	return a.ctl.Scale(ctx, env, replicas)
}

func (a *singleApp) Stop(ctx context.Context, env string) (ledger.Deployment, error) {
	return ledger.Deployment{}, fmt.Errorf("stop %s: this controller cannot stop environments yet: %w", env, errors.ErrUnsupported)
}

func (a *singleApp) Start(ctx context.Context, env string) (ledger.Deployment, error) {
	return ledger.Deployment{}, fmt.Errorf("start %s: this controller cannot start environments yet: %w", env, errors.ErrUnsupported)
}

func (a *singleApp) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	if a.logs == nil {
		return errors.ErrUnsupported
	}
	return a.logs.Logs(ctx, env, follow, w)
}

func (a *singleApp) Builds(ctx context.Context, f ledger.BuildFilter) ([]ledger.Build, error) {
	return a.builds.ListBuilds(ctx, f)
}

func (a *singleApp) Poll() { a.ctl.Poll() }

func (a *singleApp) List() []api.App { return []api.App{a} }

func (a *singleApp) Get(name string) (api.App, bool) { return a, name == a.name }

func (a *singleApp) Leftovers(ctx context.Context) ([]api.Leftover, error) { return nil, nil }

func (a *singleApp) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	if req.App == a.name {
		return api.RemoveReport{}, fmt.Errorf("remove %s: %w", req.App, api.ErrStillConfigured)
	}
	return api.RemoveReport{}, fmt.Errorf("remove %s: %w", req.App, api.ErrUnknownApp)
}
