package ledger

import (
	"context"
	"time"
)

// FinishedSince returns the deployments of env that ended at or after
// since (deployments in flight have not ended), in the order they ended.
// The delivery metrics read a window of history with it.
func (l *Deployments) FinishedSince(ctx context.Context, env string, since time.Time) ([]Deployment, error) {
	return l.many(ctx, `env = ? AND finished_at <> '' AND finished_at >= ?`, `ORDER BY finished_at, id`, env, formatTime(since))
}

// LiveBefore returns the newest deployment of env that put a version live
// (a release, automatic deploy or rollback that succeeded) and ended
// before t: what env ran when a window of history starts. It returns
// ErrNoDeployment when there was none.
func (l *Deployments) LiveBefore(ctx context.Context, env string, t time.Time) (Deployment, error) {
	where, args := l.where(`env = ? AND finished_at <> '' AND finished_at < ? AND state = 'succeeded'
		AND kind IN ('release','deploy','rollback')`, env, formatTime(t))
	list, err := queryAll(ctx, l.db, "read deployments", scanDeployment,
		`SELECT `+deploymentColumns+` FROM deployments `+where+` ORDER BY finished_at DESC, id DESC LIMIT 1`, args...)
	if err != nil {
		return Deployment{}, err
	}
	if len(list) == 0 {
		return Deployment{}, ErrNoDeployment
	}
	return list[0], nil
}
