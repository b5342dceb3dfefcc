package ledger

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Event kinds.
const (
	EventBuild    = "build"
	EventDeploy   = "deploy"
	EventVerify   = "verify"
	EventRelease  = "release"
	EventRollback = "rollback"
	EventScale    = "scale"
)

// Event outcomes.
const (
	OutcomeStarted   = "started"
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeRefused   = "refused"
	OutcomeSkipped   = "skipped"
)

// Event is one entry of the release history. Its JSON form is part of
// slipway's documented output (-o json).
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Commit  string    `json:"commit,omitempty"`
	Digest  string    `json:"digest,omitempty"`
	Env     string    `json:"env,omitempty"`
	Release string    `json:"release,omitempty"` // RC name, for releases and rollbacks
	Trigger string    `json:"trigger,omitempty"` // push, cli, api, controller, …
	Outcome string    `json:"outcome,omitempty"`
	Message string    `json:"message,omitempty"`
}

const eventColumns = `id, at, kind, commit_sha, digest, env, release_name, triggered_by, outcome, message`

// AddEvent appends an event; a zero Time is stamped with the store's clock.
func (s *Store) AddEvent(ctx context.Context, e Event) (Event, error) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	err := s.db.QueryRowContext(ctx, `INSERT INTO events (at, kind, commit_sha, digest, env, release_name, triggered_by, outcome, message)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		formatTime(e.Time), e.Kind, e.Commit, e.Digest, e.Env, e.Release, e.Trigger, e.Outcome, e.Message).Scan(&e.ID)
	if err != nil {
		return Event{}, fmt.Errorf("record %s event: %w", e.Kind, err)
	}
	return e, nil
}

// EventFilter selects events; zero fields select all.
type EventFilter struct {
	Env    string
	Kind   string
	Commit string // a full hash or a prefix
	Before int64  // only events with a smaller id (for paging)
	Limit  int    // at most this many, newest first; 0 means 100
}

// Events returns events, newest first.
func (s *Store) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var where []string
	var args []any
	if f.Env != "" {
		where = append(where, "env = ?")
		args = append(args, f.Env)
	}
	if f.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, f.Kind)
	}
	if f.Commit != "" {
		where = append(where, "commit_sha LIKE ?")
		args = append(args, strings.ToLower(f.Commit)+"%")
	}
	if f.Before > 0 {
		where = append(where, "id < ?")
		args = append(args, f.Before)
	}
	q := `SELECT ` + eventColumns + ` FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit)
	return queryAll(ctx, s.db, "list events", func(r rowScanner) (e Event, err error) {
		var at string
		if err := r.Scan(&e.ID, &at, &e.Kind, &e.Commit, &e.Digest, &e.Env, &e.Release, &e.Trigger, &e.Outcome, &e.Message); err != nil {
			return e, err
		}
		e.Time, err = parseTime(at)
		return e, err
	}, q, args...)
}
