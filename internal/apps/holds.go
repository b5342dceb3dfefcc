package apps

import (
	"context"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// Lock locks one of the app's environments.
func (p *App) Lock(ctx context.Context, req pipeline.LockRequest) (ledger.Lock, error) {
	return p.Controller.Lock(ctx, req)
}

// Unlock lifts the lock of one of the app's environments.
func (p *App) Unlock(ctx context.Context, env, by string) (ledger.Lock, error) {
	return p.Controller.Unlock(ctx, env, by)
}

// Unpin lets an automatic environment a rollback pinned take new commits.
func (p *App) Unpin(ctx context.Context, env, by string) (ledger.Pin, error) {
	return p.Controller.Unpin(ctx, env, by)
}

// Locks returns the locks that hold and the newest locks, lifted ones too.
func (p *App) Locks(ctx context.Context, limit int) (held, history []ledger.Lock, err error) {
	return p.Controller.Locks(ctx, limit)
}
