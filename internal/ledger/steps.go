package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The states of a deployment's step.
const (
	StepRunning   = "running"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepSkipped   = "skipped"
)

// Step is one step of a deployment (build, deploy, health, …), as the
// deployment_steps table (migration 0204) records it.
type Step struct {
	ID           int64  `json:"id"`
	DeploymentID int64  `json:"deploymentId"`
	Name         string `json:"name"`
	// State is StepRunning, StepSucceeded, StepFailed or StepSkipped.
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Message is the runtime's progress while the step runs (replicas
	// started, ready, drained), what it did, or why it failed.
	Message string `json:"message,omitempty"`
}

// Duration is how long the step ran: until now while it runs.
func (s Step) Duration(now time.Time) time.Duration {
	if s.Finished.IsZero() {
		return now.Sub(s.Started)
	}
	return s.Finished.Sub(s.Started)
}

// StartStep records that step name of deployment deploymentID starts now,
// and returns it, running. A value returned by ForApp refuses a deployment
// of another app (ErrNoDeployment).
func (l *Deployments) StartStep(ctx context.Context, deploymentID int64, name string) (Step, error) {
	if name == "" {
		return Step{}, fmt.Errorf("record a step of deployment %d: the step has no name", deploymentID)
	}
	s := Step{DeploymentID: deploymentID, Name: name, State: StepRunning, Started: l.now().UTC()}
	where, args := l.where("id = ?", deploymentID)
	err := l.db.QueryRowContext(ctx, `INSERT INTO deployment_steps (deployment_id, name, state, started_at)
		SELECT id, ?, ?, ? FROM deployments `+where+` RETURNING id`,
		append([]any{name, s.State, formatTime(s.Started)}, args...)...).Scan(&s.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return Step{}, fmt.Errorf("record step %s of deployment %d: %w", name, deploymentID, ErrNoDeployment)
	}
	if err != nil {
		return Step{}, fmt.Errorf("record step %s of deployment %d: %w", name, deploymentID, err)
	}
	return s, nil
}

// FinishStep records s's outcome (s.State: succeeded, failed or skipped)
// and message, and that it ended now (unless s.Finished is set).
func (l *Deployments) FinishStep(ctx context.Context, s *Step) error {
	switch s.State {
	case StepSucceeded, StepFailed, StepSkipped:
	default:
		return fmt.Errorf("finish step %s of deployment %d: state %q: give succeeded, failed or skipped", s.Name, s.DeploymentID, s.State)
	}
	if s.Finished.IsZero() {
		s.Finished = l.now().UTC()
	}
	return l.UpdateStep(ctx, s)
}

// UpdateStep writes s's state, message, start and end back: a running
// step's progress, or its outcome (and its start, for a step recorded after
// the fact).
func (l *Deployments) UpdateStep(ctx context.Context, s *Step) error {
	cond, args := "id = ? AND deployment_id = ?", []any{s.ID, s.DeploymentID}
	if l.scoped {
		cond += " AND deployment_id IN (SELECT id FROM deployments WHERE app = ?)"
		args = append(args, l.app)
	}
	res, err := l.db.ExecContext(ctx, `UPDATE deployment_steps SET state = ?, started_at = ?, finished_at = ?, message = ? WHERE `+cond,
		append([]any{s.State, formatTime(s.Started), formatTime(s.Finished), s.Message}, args...)...)
	if err != nil {
		return fmt.Errorf("update step %s of deployment %d: %w", s.Name, s.DeploymentID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("update step %s (%d) of deployment %d: %w", s.Name, s.ID, s.DeploymentID, ErrNotFound)
	}
	return nil
}

// Steps returns the steps of deployment deploymentID, in the order they
// started (none for a deployment without steps, or of another app for a
// value returned by ForApp).
func (l *Deployments) Steps(ctx context.Context, deploymentID int64) ([]Step, error) {
	cond, args := "s.deployment_id = ?", []any{deploymentID}
	if l.scoped {
		cond += " AND s.deployment_id IN (SELECT id FROM deployments WHERE app = ?)"
		args = append(args, l.app)
	}
	return queryAll(ctx, l.db, fmt.Sprintf("read the steps of deployment %d", deploymentID), scanStep,
		`SELECT s.id, s.deployment_id, s.name, s.state, s.started_at, s.finished_at, s.message
		FROM deployment_steps s WHERE `+cond+` ORDER BY s.id`, args...)
}

func scanStep(r rowScanner) (Step, error) {
	var s Step
	var started, finished string
	if err := r.Scan(&s.ID, &s.DeploymentID, &s.Name, &s.State, &started, &finished, &s.Message); err != nil {
		return Step{}, err
	}
	var err error
	if s.Started, err = parseTime(started); err != nil {
		return Step{}, err
	}
	if s.Finished, err = parseTime(finished); err != nil {
		return Step{}, err
	}
	return s, nil
}
