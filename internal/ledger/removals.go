package ledger

import (
	"context"
	"fmt"
)

// EnvRef names one environment of one app.
type EnvRef struct {
	App string
	Env string
}

// MarkRemoved records that app's environment env was removed: it stops
// being a leftover until it is deployed again. Its deployments stay.
func (s *Store) MarkRemoved(ctx context.Context, app, env string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO removals (app, env, through_id, removed_at)
		VALUES (?, ?, COALESCE((SELECT MAX(id) FROM deployments WHERE app = ? AND env = ?), 0), ?)
		ON CONFLICT (app, env) DO UPDATE SET through_id = excluded.through_id, removed_at = excluded.removed_at`,
		app, env, app, env, formatTime(s.now().UTC()))
	if err != nil {
		return fmt.Errorf("record the removal of %s of %s: %w", env, app, err)
	}
	return nil
}

// DeployedEnvs returns every app's environments that have deployments not
// followed by a removal, ordered by app and environment.
func (s *Store) DeployedEnvs(ctx context.Context) ([]EnvRef, error) {
	return queryAll(ctx, s.db, "list the deployed environments", func(r rowScanner) (e EnvRef, err error) {
		err = r.Scan(&e.App, &e.Env)
		return e, err
	}, `SELECT d.app, d.env FROM deployments d LEFT JOIN removals r ON r.app = d.app AND r.env = d.env
		GROUP BY d.app, d.env HAVING MAX(d.id) > COALESCE(MAX(r.through_id), 0) ORDER BY d.app, d.env`)
}
