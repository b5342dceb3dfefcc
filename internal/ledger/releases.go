package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DeploymentKind says why an environment was rolled out.
type DeploymentKind string

// The kinds of deployment.
const (
	KindDeploy   DeploymentKind = "deploy"   // a new head of the environment's branch (dev)
	KindRelease  DeploymentKind = "release"  // a release to a controlled environment (prod)
	KindRollback DeploymentKind = "rollback" // back to an earlier release
	KindScale    DeploymentKind = "scale"    // same image, another replica count
	KindStop     DeploymentKind = "stop"     // every replica stopped, the address kept
	KindStart    DeploymentKind = "start"    // a stopped environment started again
)

// DeploymentState is where a deployment is in its life.
type DeploymentState string

// The states of a deployment. Pending and Rolling are in flight; the others
// are final.
const (
	StatePending    DeploymentState = "pending"
	StateRolling    DeploymentState = "rolling"
	StateSucceeded  DeploymentState = "succeeded"
	StateFailed     DeploymentState = "failed"
	StateRefused    DeploymentState = "refused"
	StateRolledBack DeploymentState = "rolled-back"
)

// Final reports whether the state is an end state.
func (s DeploymentState) Final() bool {
	return s != StatePending && s != StateRolling
}

// Deployment is one rollout of an environment, as the ledger records it.
type Deployment struct {
	ID int64 `json:"id"`
	// App is the application deployed; "" on rows written before a ledger
	// held several (see ClaimUnowned).
	App         string          `json:"app"`
	Env         string          `json:"env"`
	Kind        DeploymentKind  `json:"kind"`
	Trigger     string          `json:"trigger"`
	Commit      string          `json:"commit"`
	Image       string          `json:"image"`
	Digest      string          `json:"digest"`
	ReleaseName string          `json:"release"`
	Replicas    int             `json:"replicas"`
	PreviousID  int64           `json:"previousId"`
	State       DeploymentState `json:"state"`
	Step        string          `json:"step"`
	Reason      string          `json:"reason"`
	Forced      bool            `json:"forced"`
	ForceReason string          `json:"forceReason"`
	Note        string          `json:"note"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
	FinishedAt  time.Time       `json:"finishedAt"`
	// Schema is what the deployed image declares about the database
	// schema (docs/migrations.md); omitted when it declares nothing.
	Schema Schema `json:"schema,omitzero"`
}

// ErrNoDeployment is returned when no deployment matches; it is also an
// ErrNotFound.
var ErrNoDeployment = fmt.Errorf("no such deployment: %w", ErrNotFound)

// Deployments reads and writes the deployments table (migration 0200).
// The value Store.Deployments returns sees every app's rows; ForApp
// narrows it to one app.
type Deployments struct {
	db  *sql.DB
	now func() time.Time
	// app, when scoped, limits every query to the rows of one app and is
	// stamped on the rows Create writes.
	app    string
	scoped bool
}

// ForApp returns the deployments of app only: every query of the returned
// value is limited to app's rows, and Create records the deployment as
// app's.
func (l *Deployments) ForApp(app string) *Deployments {
	return &Deployments{db: l.db, now: l.now, app: app, scoped: true}
}

// where returns the condition cond (which may be empty) limited to the
// rows this value sees, as a WHERE clause, with its arguments.
func (l *Deployments) where(cond string, args ...any) (string, []any) {
	if l.scoped {
		if cond == "" {
			return "WHERE app = ?", append([]any{l.app}, args...)
		}
		return "WHERE app = ? AND " + cond, append([]any{l.app}, args...)
	}
	if cond == "" {
		return "", args
	}
	return "WHERE " + cond, args
}

// Deployments returns the deployments table of the ledger, stamped by the
// store's clock.
func (s *Store) Deployments() *Deployments { return NewDeployments(s.db, s.Now) }

// NewDeployments returns the deployments of the ledger database db. now is
// the clock used for timestamps (time.Now when nil).
func NewDeployments(db *sql.DB, now func() time.Time) *Deployments {
	if now == nil {
		now = time.Now
	}
	return &Deployments{db: db, now: now}
}

const deploymentColumns = `id, app, env, kind, trigger, commit_sha, image, digest, release_name, replicas,
	previous_id, state, step, reason, forced, force_reason, note, created_at, updated_at, finished_at,
	schema_version, schema_floor, schema_floor_by`

// Create writes a new deployment and sets its ID and timestamps; a value
// returned by ForApp sets its app too.
func (l *Deployments) Create(ctx context.Context, d *Deployment) error {
	if l.scoped {
		d.App = l.app
	}
	now := l.now().UTC()
	d.CreatedAt, d.UpdatedAt = now, now
	if d.State.Final() {
		d.FinishedAt = now
	}
	sv, sf, sby := d.Schema.columns()
	err := l.db.QueryRowContext(ctx, `INSERT INTO deployments (app, env, kind, trigger, commit_sha, image, digest,
		release_name, replicas, previous_id, state, step, reason, forced, force_reason, note,
		created_at, updated_at, finished_at, schema_version, schema_floor, schema_floor_by)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id`,
		d.App, d.Env, string(d.Kind), d.Trigger, d.Commit, d.Image, d.Digest, d.ReleaseName, d.Replicas, d.PreviousID,
		string(d.State), d.Step, d.Reason, d.Forced, d.ForceReason, d.Note,
		formatTime(d.CreatedAt), formatTime(d.UpdatedAt), formatTime(d.FinishedAt), sv, sf, sby).Scan(&d.ID)
	if err != nil {
		return fmt.Errorf("record %s of %s on %s: %w", d.Kind, deployShort(d.Commit), d.Env, err)
	}
	return nil
}

// Update writes every field of d back, and sets its timestamps.
func (l *Deployments) Update(ctx context.Context, d *Deployment) error {
	now := l.now().UTC()
	d.UpdatedAt = now
	if d.State.Final() && d.FinishedAt.IsZero() {
		d.FinishedAt = now
	}
	where, args := l.where("id = ?", d.ID)
	sv, sf, sby := d.Schema.columns()
	res, err := l.db.ExecContext(ctx, `UPDATE deployments SET image=?, digest=?, release_name=?, replicas=?,
		previous_id=?, state=?, step=?, reason=?, forced=?, force_reason=?, note=?, updated_at=?, finished_at=?,
		schema_version=?, schema_floor=?, schema_floor_by=? `+where,
		append([]any{d.Image, d.Digest, d.ReleaseName, d.Replicas, d.PreviousID, string(d.State), d.Step, d.Reason,
			d.Forced, d.ForceReason, d.Note, formatTime(d.UpdatedAt), formatTime(d.FinishedAt), sv, sf, sby}, args...)...)
	if err != nil {
		return fmt.Errorf("update deployment %d (%s on %s): %w", d.ID, deployShort(d.Commit), d.Env, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("update deployment %d (%s on %s): %w", d.ID, deployShort(d.Commit), d.Env, ErrNoDeployment)
	}
	return nil
}

// Get returns the deployment with the given id.
func (l *Deployments) Get(ctx context.Context, id int64) (Deployment, error) {
	return l.one(ctx, `id = ?`, id)
}

// Current returns the latest succeeded deployment of env: what it runs.
func (l *Deployments) Current(ctx context.Context, env string) (Deployment, error) {
	return l.one(ctx, `env = ? AND state = 'succeeded'`, env)
}

// LastFailure returns the latest deployment of env that failed, was refused
// or rolled back after its latest success (ErrNoDeployment when none did).
func (l *Deployments) LastFailure(ctx context.Context, env string, after int64) (Deployment, error) {
	return l.one(ctx, `env = ? AND state IN ('failed','refused','rolled-back') AND id > ?`, env, after)
}

// InFlight returns every deployment still pending or rolling, oldest first.
func (l *Deployments) InFlight(ctx context.Context) ([]Deployment, error) {
	return l.many(ctx, `state IN ('pending','rolling')`, `ORDER BY id`)
}

// Latest returns the newest deployments, of env when env is not empty,
// newest first, at most limit of them.
func (l *Deployments) Latest(ctx context.Context, env string, limit int) ([]Deployment, error) {
	if env == "" {
		return l.many(ctx, ``, `ORDER BY id DESC LIMIT ?`, limit)
	}
	return l.many(ctx, `env = ?`, `ORDER BY id DESC LIMIT ?`, env, limit)
}

// LatestForCommit returns the newest deployment of kind on env for commit.
func (l *Deployments) LatestForCommit(ctx context.Context, env string, kind DeploymentKind, commit string) (Deployment, error) {
	return l.one(ctx, `commit_sha = ? AND env = ? AND kind = ?`, commit, env, string(kind))
}

// Verified returns the newest succeeded deployment of kind deploy on env: the
// newest commit that passed all of env's checks.
func (l *Deployments) Verified(ctx context.Context, env string) (Deployment, error) {
	return l.one(ctx, `env = ? AND state = 'succeeded' AND kind = 'deploy'`, env)
}

// Releases returns the succeeded releases and rollbacks of env, newest
// first, at most limit of them.
func (l *Deployments) Releases(ctx context.Context, env string, limit int) ([]Deployment, error) {
	return l.many(ctx, `env = ? AND state = 'succeeded' AND kind IN ('release','rollback')`,
		`ORDER BY id DESC LIMIT ?`, env, limit)
}

// ReleaseByName returns the succeeded release named name on env.
func (l *Deployments) ReleaseByName(ctx context.Context, env, name string) (Deployment, error) {
	return l.one(ctx, `release_name = ? AND env = ? AND state = 'succeeded' AND kind = 'release'`, name, env)
}

// ReleaseByCommit returns the newest succeeded release of commit on env.
func (l *Deployments) ReleaseByCommit(ctx context.Context, env, commit string) (Deployment, error) {
	return l.one(ctx, `commit_sha = ? AND env = ? AND state = 'succeeded' AND kind = 'release'`, commit, env)
}

// ReleaseNames returns the release names that start with prefix, used or
// reserved by any deployment.
func (l *Deployments) ReleaseNames(ctx context.Context, prefix string) ([]string, error) {
	where, args := l.where(`release_name >= ? AND release_name < ?`, prefix, prefix+"\uffff")
	return queryAll(ctx, l.db, "list release names "+prefix+"*", func(r rowScanner) (n string, err error) {
		err = r.Scan(&n)
		return n, err
	}, `SELECT DISTINCT release_name FROM deployments `+where, args...)
}

// one returns the newest row that matches cond.
func (l *Deployments) one(ctx context.Context, cond string, args ...any) (Deployment, error) {
	where, args := l.where(cond, args...)
	row := l.db.QueryRowContext(ctx, `SELECT `+deploymentColumns+` FROM deployments `+where+` ORDER BY id DESC LIMIT 1`, args...)
	d, err := scanDeployment(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Deployment{}, ErrNoDeployment
	}
	if err != nil {
		return Deployment{}, fmt.Errorf("read deployments: %w", err)
	}
	return d, nil
}

// many returns the rows that match cond, in the order and up to the limit
// of tail; args are cond's and then tail's.
func (l *Deployments) many(ctx context.Context, cond, tail string, args ...any) ([]Deployment, error) {
	where, args := l.where(cond, args...)
	return queryAll(ctx, l.db, "read deployments", scanDeployment,
		`SELECT `+deploymentColumns+` FROM deployments `+where+` `+tail, args...)
}

func scanDeployment(s rowScanner) (Deployment, error) {
	var d Deployment
	var kind, state string
	var created, updated, finished string
	var sv, sf int
	var sby string
	err := s.Scan(&d.ID, &d.App, &d.Env, &kind, &d.Trigger, &d.Commit, &d.Image, &d.Digest, &d.ReleaseName,
		&d.Replicas, &d.PreviousID, &state, &d.Step, &d.Reason, &d.Forced, &d.ForceReason, &d.Note,
		&created, &updated, &finished, &sv, &sf, &sby)
	if err != nil {
		return Deployment{}, err
	}
	d.Kind, d.State = DeploymentKind(kind), DeploymentState(state)
	d.Schema = schemaOf(sv, sf, sby)
	for _, f := range []struct {
		s string
		t *time.Time
	}{{created, &d.CreatedAt}, {updated, &d.UpdatedAt}, {finished, &d.FinishedAt}} {
		if *f.t, err = parseTime(f.s); err != nil {
			return Deployment{}, err
		}
	}
	return d, nil
}

func deployShort(commit string) string {
	if len(commit) > 7 && !strings.ContainsAny(commit[:7], "/ ") {
		return commit[:7]
	}
	return commit
}

// DeploymentCount is how many deployments share an app, environment, kind
// and state.
type DeploymentCount struct {
	App   string
	Env   string
	Kind  DeploymentKind
	State DeploymentState
	N     int
}

// Counts counts the deployments by app, environment, kind and state.
func (l *Deployments) Counts(ctx context.Context) ([]DeploymentCount, error) {
	where, args := l.where("")
	return queryAll(ctx, l.db, "count deployments", func(r rowScanner) (c DeploymentCount, err error) {
		var kind, state string
		err = r.Scan(&c.App, &c.Env, &kind, &state, &c.N)
		c.Kind, c.State = DeploymentKind(kind), DeploymentState(state)
		return c, err
	}, `SELECT app, env, kind, state, COUNT(*) FROM deployments `+where+`
		GROUP BY app, env, kind, state ORDER BY app, env, kind, state`, args...)
}

// ClaimUnowned records every deployment that names no app (written before
// a ledger held several apps) as app's, and returns how many it changed.
// Call it at start when one app runs, so that an older ledger's history
// stays that app's.
func (l *Deployments) ClaimUnowned(ctx context.Context, app string) (int64, error) {
	if app == "" {
		return 0, errors.New("claim the ledger's deployments: no app named")
	}
	res, err := l.db.ExecContext(ctx, `UPDATE deployments SET app = ? WHERE app = ''`, app)
	if err != nil {
		return 0, fmt.Errorf("record earlier deployments as %s's: %w", app, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("record earlier deployments as %s's: %w", app, err)
	}
	return n, nil
}

// Apps returns the apps that have deployments, by name ("" for rows no app
// has claimed).
func (l *Deployments) Apps(ctx context.Context) ([]string, error) {
	where, args := l.where("")
	return queryAll(ctx, l.db, "list the ledger's apps", func(r rowScanner) (a string, err error) {
		err = r.Scan(&a)
		return a, err
	}, `SELECT DISTINCT app FROM deployments `+where+` ORDER BY app`, args...)
}

// Envs returns the environments that have deployments, by name: of one app
// for a value returned by ForApp, of every app otherwise.
func (l *Deployments) Envs(ctx context.Context) ([]string, error) {
	where, args := l.where("")
	return queryAll(ctx, l.db, "list the ledger's environments", func(r rowScanner) (e string, err error) {
		err = r.Scan(&e)
		return e, err
	}, `SELECT DISTINCT env FROM deployments `+where+` ORDER BY env`, args...)
}
