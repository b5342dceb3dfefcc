package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// BuildState is where a build is.
type BuildState string

// Build states, in the order a build goes through them. Pushed and Failed
// are final.
const (
	BuildQueued   BuildState = "queued"
	BuildTesting  BuildState = "testing"
	BuildBuilding BuildState = "building"
	BuildPushed   BuildState = "pushed"
	BuildFailed   BuildState = "failed"
)

// Final reports whether a build in this state is over.
func (s BuildState) Final() bool { return s == BuildPushed || s == BuildFailed }

// Build is one build of one commit. Its JSON form is part of slipway's
// documented output (-o json).
type Build struct {
	ID            int64         `json:"id"`
	App           string        `json:"app"`
	Commit        string        `json:"commit"`
	State         BuildState    `json:"state"`
	Image         string        `json:"image,omitempty"`  // repository, such as 127.0.0.1:5000/app
	Digest        string        `json:"digest,omitempty"` // sha256:…, once pushed
	Reason        string        `json:"reason,omitempty"` // why it failed, or why no work was done
	TestDuration  time.Duration `json:"testDurationNs"`
	BuildDuration time.Duration `json:"buildDurationNs"`
	LogPath       string        `json:"logPath,omitempty"`
	Trigger       string        `json:"trigger,omitempty"` // who or what asked: cli, push, …
	Created       time.Time     `json:"created"`
	Updated       time.Time     `json:"updated"`
	Finished      time.Time     `json:"finished,omitzero"`
	// Schema is what the image declares about the database schema, once
	// pushed (docs/migrations.md).
	Schema Schema `json:"schema,omitzero"`
}

// Reference is the image's digest reference (REPOSITORY@sha256:…), or ""
// before it is pushed.
func (b Build) Reference() string {
	if b.Digest == "" || b.Image == "" {
		return ""
	}
	return b.Image + "@" + b.Digest
}

const buildColumns = `id, app, commit_sha, state, image, digest, reason, test_ms, build_ms, log_path, triggered_by, created_at, updated_at, finished_at,
	schema_version, schema_floor, schema_floor_by`

// CreateBuild records a new build (state queued unless b.State is set) and
// returns it with its id and times.
func (s *Store) CreateBuild(ctx context.Context, b Build) (Build, error) {
	now := s.now().UTC()
	if b.State == "" {
		b.State = BuildQueued
	}
	b.Created, b.Updated = now, now
	if b.State.Final() {
		b.Finished = now
	}
	sv, sf, sby := b.Schema.columns()
	err := s.db.QueryRowContext(ctx, `INSERT INTO builds
		(app, commit_sha, state, image, digest, reason, test_ms, build_ms, log_path, triggered_by, created_at, updated_at, finished_at,
		schema_version, schema_floor, schema_floor_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		b.App, b.Commit, string(b.State), b.Image, b.Digest, b.Reason, b.TestDuration.Milliseconds(), b.BuildDuration.Milliseconds(),
		b.LogPath, b.Trigger, formatTime(b.Created), formatTime(b.Updated), formatTime(b.Finished), sv, sf, sby).Scan(&b.ID)
	if err != nil {
		return Build{}, fmt.Errorf("record build of %s: %w", b.Commit, err)
	}
	s.buildChanged(b.App)
	return b, nil
}

// UpdateBuild writes b's commit, state, image, digest, reason, durations
// and log path; the update time is stamped, and the finish time when the state is
// final.
func (s *Store) UpdateBuild(ctx context.Context, b *Build) error {
	now := s.now().UTC()
	b.Updated = now
	if b.State.Final() && b.Finished.IsZero() {
		b.Finished = now
	}
	sv, sf, sby := b.Schema.columns()
	res, err := s.db.ExecContext(ctx, `UPDATE builds SET commit_sha = ?, state = ?, image = ?, digest = ?, reason = ?, test_ms = ?, build_ms = ?,
		log_path = ?, updated_at = ?, finished_at = ?, schema_version = ?, schema_floor = ?, schema_floor_by = ? WHERE id = ?`,
		b.Commit, string(b.State), b.Image, b.Digest, b.Reason, b.TestDuration.Milliseconds(), b.BuildDuration.Milliseconds(),
		b.LogPath, formatTime(b.Updated), formatTime(b.Finished), sv, sf, sby, b.ID)
	if err != nil {
		return fmt.Errorf("record build %d as %s: %w", b.ID, b.State, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("record build %d as %s: %w", b.ID, b.State, ErrNotFound)
	}
	s.buildChanged(b.App)
	return nil
}

// OnBuildChange makes every build row write that succeeds (CreateBuild,
// UpdateBuild) call f with the build's app; nil stops it. f is called
// holding no lock and must not block.
func (s *Store) OnBuildChange(f func(app string)) {
	if f == nil {
		s.onBuild.Store(nil)
		return
	}
	s.onBuild.Store(&f)
}

func (s *Store) buildChanged(app string) {
	if f := s.onBuild.Load(); f != nil {
		(*f)(app)
	}
}

// GetBuild returns the build with the given id.
func (s *Store) GetBuild(ctx context.Context, id int64) (Build, error) {
	b, err := scanBuild(s.db.QueryRowContext(ctx, `SELECT `+buildColumns+` FROM builds WHERE id = ?`, id))
	if err != nil {
		return Build{}, fmt.Errorf("build %d: %w", id, err)
	}
	return b, nil
}

// LatestBuild returns the newest build, of any app, of the commit that
// commit (a full hash or a prefix of at least 4 hex digits) names.
// ErrNotFound when there is none, ErrAmbiguous when the prefix matches
// several commits.
func (s *Store) LatestBuild(ctx context.Context, commit string) (Build, error) {
	return s.LatestAppBuild(ctx, "", commit)
}

// LatestAppBuild is LatestBuild for the builds of app only (of any app when
// app is ""): two apps may build the same commit, each from its own clone
// into its own repository.
func (s *Store) LatestAppBuild(ctx context.Context, app, commit string) (Build, error) {
	commit = strings.ToLower(commit)
	if len(commit) < 4 || strings.Trim(commit, "0123456789abcdef") != "" {
		return Build{}, fmt.Errorf("build of %q: give a commit hash (at least 4 hex digits): %w", commit, ErrNotFound)
	}
	cond, args := `commit_sha LIKE ?`, []any{commit + "%"}
	of := ""
	if app != "" {
		cond, args = `app = ? AND `+cond, append([]any{app}, args...)
		of = " of " + app
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(DISTINCT commit_sha) FROM builds WHERE `+cond, args...).Scan(&n); err != nil {
		return Build{}, fmt.Errorf("build%s of %s: %w", of, commit, err)
	}
	switch {
	case n == 0:
		return Build{}, fmt.Errorf("no build%s of commit %s: %w", of, commit, ErrNotFound)
	case n > 1:
		return Build{}, fmt.Errorf("commit %s: %d built commits%s start with it; give more digits: %w", commit, n, of, ErrAmbiguous)
	}
	b, err := scanBuild(s.db.QueryRowContext(ctx, `SELECT `+buildColumns+` FROM builds WHERE `+cond+` ORDER BY id DESC LIMIT 1`, args...))
	if err != nil {
		return Build{}, fmt.Errorf("build%s of %s: %w", of, commit, err)
	}
	return b, nil
}

// BuildFilter selects builds; zero fields select all.
type BuildFilter struct {
	App   string     // only builds of this app
	State BuildState // only builds in this state
	Limit int        // at most this many, newest first; 0 means 100
}

// ListBuilds returns builds, newest first.
func (s *Store) ListBuilds(ctx context.Context, f BuildFilter) ([]Build, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var where []string
	var args []any
	if f.App != "" {
		where = append(where, `app = ?`)
		args = append(args, f.App)
	}
	if f.State != "" {
		where = append(where, `state = ?`)
		args = append(args, string(f.State))
	}
	q := `SELECT ` + buildColumns + ` FROM builds`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit)
	return queryAll(ctx, s.db, "list builds", scanBuild, q, args...)
}

// UnfinishedBuilds returns app's builds (every app's when app is "") not in
// a final state, oldest first: after a crash these were interrupted.
func (s *Store) UnfinishedBuilds(ctx context.Context, app string) ([]Build, error) {
	q, args := `SELECT `+buildColumns+` FROM builds WHERE state NOT IN (?, ?)`, []any{string(BuildPushed), string(BuildFailed)}
	if app != "" {
		q, args = q+` AND app = ?`, append(args, app)
	}
	return queryAll(ctx, s.db, "list unfinished builds", scanBuild, q+` ORDER BY id`, args...)
}

func scanBuild(r rowScanner) (Build, error) {
	var b Build
	var state, created, updated, finished string
	var testMS, buildMS int64
	var sv, sf int
	var sby string
	err := r.Scan(&b.ID, &b.App, &b.Commit, &state, &b.Image, &b.Digest, &b.Reason, &testMS, &buildMS, &b.LogPath, &b.Trigger, &created, &updated, &finished,
		&sv, &sf, &sby)
	if errors.Is(err, sql.ErrNoRows) {
		return Build{}, ErrNotFound
	}
	if err != nil {
		return Build{}, err
	}
	b.State = BuildState(state)
	b.Schema = schemaOf(sv, sf, sby)
	b.TestDuration = time.Duration(testMS) * time.Millisecond
	b.BuildDuration = time.Duration(buildMS) * time.Millisecond
	if b.Created, err = parseTime(created); err != nil {
		return Build{}, err
	}
	if b.Updated, err = parseTime(updated); err != nil {
		return Build{}, err
	}
	if b.Finished, err = parseTime(finished); err != nil {
		return Build{}, err
	}
	return b, nil
}
