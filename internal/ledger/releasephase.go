package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ReleasePhase is the release phase of one deployment, as the
// release_phases table (migration 0208) records it.
type ReleasePhase struct {
	DeploymentID int64
	Env          string
	// Digest is the image the command ran from.
	Digest string
	// State is StepRunning (started, not known to have ended),
	// StepSucceeded or StepFailed.
	State    string
	Started  time.Time
	Finished time.Time
}

// StartReleasePhase records that the release phase of deployment
// deploymentID starts now, from the image digest: running. A deployment's
// earlier record (a run a restart interrupted) is replaced.
func (l *Deployments) StartReleasePhase(ctx context.Context, deploymentID int64, digest string) error {
	where, args := l.where("id = ?", deploymentID)
	res, err := l.db.ExecContext(ctx, `INSERT INTO release_phases (deployment_id, digest, state, started_at)
		SELECT id, ?, ?, ? FROM deployments `+where+`
		ON CONFLICT (deployment_id) DO UPDATE SET digest = excluded.digest, state = excluded.state,
			started_at = excluded.started_at, finished_at = ''`,
		append([]any{digest, StepRunning, formatTime(l.now())}, args...)...)
	if err != nil {
		return fmt.Errorf("record the release phase of deployment %d: %w", deploymentID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("record the release phase of deployment %d: %w", deploymentID, ErrNoDeployment)
	}
	return nil
}

// FinishReleasePhase records how the release phase of deployment
// deploymentID ended: StepSucceeded or StepFailed.
func (l *Deployments) FinishReleasePhase(ctx context.Context, deploymentID int64, state string) error {
	if state != StepSucceeded && state != StepFailed {
		return fmt.Errorf("finish the release phase of deployment %d: state %q: give succeeded or failed", deploymentID, state)
	}
	cond, args := "deployment_id = ?", []any{deploymentID}
	if l.scoped {
		cond += " AND deployment_id IN (SELECT id FROM deployments WHERE app = ?)"
		args = append(args, l.app)
	}
	res, err := l.db.ExecContext(ctx, `UPDATE release_phases SET state = ?, finished_at = ? WHERE `+cond,
		append([]any{state, formatTime(l.now())}, args...)...)
	if err != nil {
		return fmt.Errorf("finish the release phase of deployment %d: %w", deploymentID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("finish the release phase of deployment %d: it was never started: %w", deploymentID, ErrNotFound)
	}
	return nil
}

// LastReleasePhase returns the newest release phase run on env by a
// deployment numbered above after, or ErrNotFound when there is none.
func (l *Deployments) LastReleasePhase(ctx context.Context, env string, after int64) (ReleasePhase, error) {
	cond, args := "d.env = ? AND r.deployment_id > ?", []any{env, after}
	if l.scoped {
		cond += " AND d.app = ?"
		args = append(args, l.app)
	}
	var r ReleasePhase
	var started, finished string
	err := l.db.QueryRowContext(ctx, `SELECT r.deployment_id, d.env, r.digest, r.state, r.started_at, r.finished_at
		FROM release_phases r JOIN deployments d ON d.id = r.deployment_id
		WHERE `+cond+` ORDER BY r.deployment_id DESC LIMIT 1`, args...).
		Scan(&r.DeploymentID, &r.Env, &r.Digest, &r.State, &started, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		return ReleasePhase{}, fmt.Errorf("release phase on %s after deployment %d: %w", env, after, ErrNotFound)
	}
	if err != nil {
		return ReleasePhase{}, fmt.Errorf("read the release phases of %s: %w", env, err)
	}
	if r.Started, err = parseTime(started); err != nil {
		return ReleasePhase{}, err
	}
	if r.Finished, err = parseTime(finished); err != nil {
		return ReleasePhase{}, err
	}
	return r, nil
}
