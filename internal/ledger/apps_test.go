package ledger

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDeploymentsForApp checks that a value of ForApp sees only its app's
// rows in every query, and stamps its app on what it creates.
func TestDeploymentsForApp(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	all := st.Deployments()
	a, b := all.ForApp("shop"), all.ForApp("blog")
	c := strings.Repeat("c", 40) // both apps deploy the same commit hash

	for _, l := range []*Deployments{a, b} {
		for _, d := range []*Deployment{
			{Env: "dev", Kind: KindDeploy, Commit: c, State: StateSucceeded},
			{Env: "prod", Kind: KindRelease, Commit: c, ReleaseName: "RC20261127_0930", State: StateSucceeded},
			{Env: "prod", Kind: KindScale, Commit: c, State: StatePending},
		} {
			if err := l.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	aRows, err := a.Latest(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(aRows) != 3 {
		t.Fatalf("shop's Latest = %d rows, want 3", len(aRows))
	}
	for _, d := range aRows {
		if d.App != "shop" {
			t.Errorf("shop's Latest has row %d of app %q", d.ID, d.App)
		}
	}
	bPending := int64(6)
	if _, err := a.Get(ctx, bPending); !errors.Is(err, ErrNoDeployment) {
		t.Errorf("shop's Get of blog's row: %v, want ErrNoDeployment", err)
	}
	if d, err := all.Get(ctx, bPending); err != nil || d.App != "blog" {
		t.Errorf("unscoped Get = %+v, %v; want blog's row", d, err)
	}
	// Update through another app's value changes nothing.
	d, _ := all.Get(ctx, bPending)
	d.State = StateFailed
	if err := a.Update(ctx, &d); !errors.Is(err, ErrNoDeployment) {
		t.Errorf("shop's Update of blog's row: %v, want ErrNoDeployment", err)
	}
	if got, _ := all.Get(ctx, bPending); got.State != StatePending {
		t.Errorf("blog's row changed through shop's value: state %s", got.State)
	}

	checks := []struct {
		name string
		get  func(l *Deployments) (Deployment, error)
	}{
		{"Current", func(l *Deployments) (Deployment, error) { return l.Current(ctx, "prod") }},
		{"Verified", func(l *Deployments) (Deployment, error) { return l.Verified(ctx, "dev") }},
		{"LatestForCommit", func(l *Deployments) (Deployment, error) { return l.LatestForCommit(ctx, "dev", KindDeploy, c) }},
		{"ReleaseByName", func(l *Deployments) (Deployment, error) { return l.ReleaseByName(ctx, "prod", "RC20261127_0930") }},
		{"ReleaseByCommit", func(l *Deployments) (Deployment, error) { return l.ReleaseByCommit(ctx, "prod", c) }},
	}
	for _, ch := range checks {
		for _, l := range []*Deployments{a, b} {
			d, err := ch.get(l)
			if err != nil {
				t.Errorf("%s of %s: %v", ch.name, l.app, err)
				continue
			}
			if d.App != l.app {
				t.Errorf("%s of %s returned a row of %q", ch.name, l.app, d.App)
			}
		}
	}
	fail := &Deployment{Env: "prod", Kind: KindRelease, Commit: c, State: StateFailed}
	if err := b.Create(ctx, fail); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LastFailure(ctx, "prod", 0); !errors.Is(err, ErrNoDeployment) {
		t.Errorf("shop's LastFailure: %v, want none (the failure is blog's)", err)
	}
	if got, err := b.LastFailure(ctx, "prod", 0); err != nil || got.ID != fail.ID {
		t.Errorf("blog's LastFailure = %+v, %v", got, err)
	}
	for _, l := range []*Deployments{a, b} {
		inflight, err := l.InFlight(ctx)
		if err != nil || len(inflight) != 1 || inflight[0].App != l.app {
			t.Errorf("%s's InFlight = %+v, %v; want its one pending scale", l.app, inflight, err)
		}
		rel, err := l.Releases(ctx, "prod", 10)
		if err != nil || len(rel) != 1 || rel[0].App != l.app {
			t.Errorf("%s's Releases = %+v, %v", l.app, rel, err)
		}
		names, err := l.ReleaseNames(ctx, "RC20261127")
		if err != nil || len(names) != 1 {
			t.Errorf("%s's ReleaseNames = %v, %v", l.app, names, err)
		}
		prod, err := l.Latest(ctx, "prod", 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range prod {
			if d.App != l.app || d.Env != "prod" {
				t.Errorf("%s's Latest(prod) has row %d of %s/%s", l.app, d.ID, d.App, d.Env)
			}
		}
	}
	counts, err := a.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []DeploymentCount{
		{"shop", "dev", KindDeploy, StateSucceeded, 1},
		{"shop", "prod", KindRelease, StateSucceeded, 1},
		{"shop", "prod", KindScale, StatePending, 1},
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("shop's Counts (-want +got):\n%s", diff)
	}
	if counts, err := all.Counts(ctx); err != nil || len(counts) != 7 {
		t.Errorf("Counts of every app = %+v, %v; want 7 groups", counts, err)
	}
}

// TestClaimUnowned checks an upgrade: a ledger written before deployments
// named their app gets its rows claimed by the one app, and the listings
// of apps and environments follow.
func TestClaimUnowned(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	all := st.Deployments()
	c := strings.Repeat("1", 40)
	for _, env := range []string{"dev", "prod"} {
		if err := all.Create(ctx, &Deployment{Env: env, Kind: KindDeploy, Commit: c, State: StateSucceeded}); err != nil {
			t.Fatal(err)
		}
	}
	if err := all.ForApp("blog").Create(ctx, &Deployment{Env: "staging", Kind: KindDeploy, Commit: c, State: StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	if apps, err := all.Apps(ctx); err != nil || !cmp.Equal(apps, []string{"", "blog"}) {
		t.Errorf("Apps before the claim = %q, %v", apps, err)
	}
	shop := all.ForApp("shop")
	if _, err := shop.Current(ctx, "prod"); !errors.Is(err, ErrNoDeployment) {
		t.Errorf("shop's Current before the claim: %v, want ErrNoDeployment", err)
	}
	n, err := all.ClaimUnowned(ctx, "shop")
	if err != nil || n != 2 {
		t.Fatalf("ClaimUnowned = %d, %v; want 2 rows", n, err)
	}
	if n, err := all.ClaimUnowned(ctx, "shop"); err != nil || n != 0 {
		t.Errorf("second ClaimUnowned = %d, %v; want 0", n, err)
	}
	if _, err := all.ClaimUnowned(ctx, ""); err == nil {
		t.Error("ClaimUnowned(\"\") succeeded")
	}
	if d, err := shop.Current(ctx, "prod"); err != nil || d.App != "shop" {
		t.Errorf("shop's Current after the claim = %+v, %v", d, err)
	}
	if apps, err := all.Apps(ctx); err != nil || !cmp.Equal(apps, []string{"blog", "shop"}) {
		t.Errorf("Apps = %q, %v", apps, err)
	}
	if envs, err := all.Envs(ctx); err != nil || !cmp.Equal(envs, []string{"dev", "prod", "staging"}) {
		t.Errorf("Envs = %q, %v", envs, err)
	}
	if envs, err := shop.Envs(ctx); err != nil || !cmp.Equal(envs, []string{"dev", "prod"}) {
		t.Errorf("shop's Envs = %q, %v", envs, err)
	}
}

// TestMigrateDeploymentsApp checks that rows written before migration 0201
// keep every field and name no app.
func TestMigrateDeploymentsApp(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	st := openTest(t, path)
	db := st.DB()
	// Undo 0201, as in a ledger written before it.
	for _, q := range []string{
		`DROP INDEX deployments_app_env_id`, `DROP INDEX deployments_app_env_state_id`, `DROP INDEX deployments_app_env_kind_state_id`,
		`DROP INDEX deployments_app_state`,
		`DROP INDEX deployments_app_commit`, `DROP INDEX deployments_app_release_name`, `DROP INDEX builds_app_commit`,
		`DROP INDEX deployments_app_env_finished`, `DELETE FROM schema_migrations WHERE version = 205`, // 0205 names app too
		`ALTER TABLE deployments DROP COLUMN app`,
		`CREATE INDEX deployments_env_id ON deployments (env, id)`,
		`CREATE INDEX deployments_env_state_id ON deployments (env, state, id)`,
		`CREATE INDEX deployments_state ON deployments (state)`,
		`CREATE INDEX deployments_commit ON deployments (commit_sha, env, id)`,
		`CREATE INDEX deployments_release_name ON deployments (release_name)`,
		`DELETE FROM schema_migrations WHERE version = 201`,
		`INSERT INTO deployments (env, kind, trigger, commit_sha, state, release_name, created_at, updated_at)
			VALUES ('prod', 'release', 'cli', '` + strings.Repeat("2", 40) + `', 'succeeded', 'RC20260101_1200',
			'2026-01-01T12:00:00.000000000Z', '2026-01-01T12:00:00.000000000Z')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	st.Close()
	st = openTest(t, path)
	d, err := st.Deployments().ReleaseByName(ctx, "prod", "RC20260101_1200")
	if err != nil {
		t.Fatal(err)
	}
	want := Deployment{ID: d.ID, Env: "prod", Kind: KindRelease, Trigger: "cli", Commit: strings.Repeat("2", 40),
		State: StateSucceeded, ReleaseName: "RC20260101_1200",
		CreatedAt: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("migrated row (-want +got):\n%s", diff)
	}
}

// TestStatusQueriesUseAppIndexes checks that the lookups status makes for
// one app find its rows through an index by app, with many apps' history
// (10,000 deployments per app): every query they run is recorded, and its
// plan searches an app index of the deployments table rather than scanning
// the table or another app's rows. (How long status takes is measured by
// the status benchmarks: docs/benchmarks.md.)
func TestStatusQueriesUseAppIndexes(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	st := openTest(t, path)
	// 10,000 deployments for each of three apps, made by SQLite itself
	// (fast under the race detector too).
	if _, err := st.DB().ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
		INSERT INTO deployments (app, env, kind, trigger, commit_sha, state, release_name, created_at, updated_at)
		SELECT a.app, CASE i % 3 WHEN 0 THEN 'dev' WHEN 1 THEN 'staging' ELSE 'prod' END, 'release', 'cli',
			printf('%040d', i), CASE i % 4 WHEN 1 THEN 'failed' WHEN 3 THEN 'refused' ELSE 'succeeded' END,
			printf('RC%08d_%04d', i / 100, i % 100), '', ''
		FROM n, (SELECT 'a' AS app UNION ALL SELECT 'b' UNION ALL SELECT 'c') AS a`); err != nil {
		t.Fatal(err)
	}
	rec := &recordingConnector{drv: st.DB().Driver(), dsn: "file:" + path}
	db := sql.OpenDB(rec)
	defer db.Close()
	l := NewDeployments(db, nil).ForApp("b")
	for _, env := range []string{"dev", "staging", "prod"} {
		cur, err := l.Current(ctx, env)
		if err != nil || cur.App != "b" {
			t.Fatalf("Current(%s) = %+v, %v", env, cur, err)
		}
		if _, err := l.LastFailure(ctx, env, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Verified(ctx, env); !errors.Is(err, ErrNoDeployment) {
			t.Fatal(err)
		}
		if _, err := l.Releases(ctx, env, 20); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.InFlight(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReleaseNames(ctx, "RC00000050"); err != nil {
		t.Fatal(err)
	}
	queries := rec.recorded()
	if len(queries) < 6 {
		t.Fatalf("recorded %d distinct queries, want at least one per kind of lookup: %q", len(queries), queries)
	}
	for _, q := range queries {
		// Unbound parameters are NULL: the plan is chosen without values.
		plan := queryPlan(t, st, q, make([]any, strings.Count(q, "?"))...)
		for _, step := range plan {
			if strings.Contains(step, "deployments") && (!strings.HasPrefix(step, "SEARCH deployments USING ") ||
				!strings.Contains(step, "INDEX deployments_app_") || !strings.Contains(step, "(app=?")) {
				t.Errorf("query %s\nplan %q: reads the deployments table without searching an index by app", q, plan)
			}
		}
	}
}

// recordingConnector opens connections of drv to dsn that record the
// distinct statements prepared on them.
type recordingConnector struct {
	drv driver.Driver
	dsn string

	mu      sync.Mutex
	queries []string
}

func (c *recordingConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return recordingConn{Conn: conn, c: c}, nil
}

func (c *recordingConnector) Driver() driver.Driver { return c.drv }

func (c *recordingConnector) recorded() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.queries)
}

// recordingConn has only the methods of driver.Conn, so that database/sql
// prepares every statement it runs through Prepare.
type recordingConn struct {
	driver.Conn
	c *recordingConnector
}

func (r recordingConn) Prepare(query string) (driver.Stmt, error) {
	r.c.mu.Lock()
	if !slices.Contains(r.c.queries, query) {
		r.c.queries = append(r.c.queries, query)
	}
	r.c.mu.Unlock()
	return r.Conn.Prepare(query)
}

// TestBuildsPerApp checks that two apps building the same commit each find
// their own build.
func TestBuildsPerApp(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), FileName))
	c := strings.Repeat("ab", 20)
	for _, b := range []Build{
		{App: "shop", Commit: c, Image: "r/shop", State: BuildPushed, Digest: "sha256:1"},
		{App: "blog", Commit: c, Image: "r/blog", State: BuildPushed, Digest: "sha256:2"},
		{App: "blog", Commit: strings.Repeat("cd", 20), Image: "r/blog", State: BuildTesting},
	} {
		if _, err := s.CreateBuild(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := s.LatestAppBuild(ctx, "shop", c[:8]); err != nil || b.Image != "r/shop" {
		t.Errorf("shop's build = %+v, %v", b, err)
	}
	if b, err := s.LatestAppBuild(ctx, "blog", c); err != nil || b.Image != "r/blog" {
		t.Errorf("blog's build = %+v, %v", b, err)
	}
	if _, err := s.LatestAppBuild(ctx, "wiki", c); !errors.Is(err, ErrNotFound) {
		t.Errorf("wiki's build: %v, want ErrNotFound", err)
	}
	if b, err := s.LatestBuild(ctx, c); err != nil || b.App != "blog" {
		t.Errorf("LatestBuild of any app = %+v, %v; want the newest, blog's", b, err)
	}
	bs, err := s.ListBuilds(ctx, BuildFilter{App: "shop"})
	if err != nil || len(bs) != 1 || bs[0].App != "shop" {
		t.Errorf("shop's builds = %+v, %v", bs, err)
	}
	un, err := s.UnfinishedBuilds(ctx, "shop")
	if err != nil || len(un) != 0 {
		t.Errorf("shop's unfinished builds = %+v, %v; want none", un, err)
	}
	un, err = s.UnfinishedBuilds(ctx, "blog")
	if err != nil || len(un) != 1 {
		t.Errorf("blog's unfinished builds = %+v, %v; want one", un, err)
	}
}

// TestDesiredStateHasOneOwner checks that the runtime's copy of the
// desired state is gone: no environments table, and no import of the
// runtimes' package (the ledger records deployments, not specs).
func TestDesiredStateHasOneOwner(t *testing.T) {
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	var n int
	if err := st.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sqlite_master WHERE name = 'environments'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("the ledger still has an environments table")
	}
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "slipway.dev/slipway/internal/deploy") {
			t.Errorf("package ledger imports %s", imp)
		}
	}
}
