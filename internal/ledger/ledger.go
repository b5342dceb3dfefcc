// Package ledger is slipway's record of what was built, deployed and
// released: an embedded SQLite database (WAL, busy timeout) with versioned
// migrations. Intent is written here before it is acted on.
//
// The SQL is kept portable so that a PostgreSQL store can share it: plain
// types (INTEGER, BIGINT, TEXT), times as fixed-width UTC text, ids through
// RETURNING, and ? placeholders, which a PostgreSQL Store rewrites to $1,
// $2, … (PostgreSQL's migrations would live in their own directory, as
// their id columns are identities rather than INTEGER PRIMARY KEY).
package ledger

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the ledger's file inside slipway's data directory.
const FileName = "ledger.db"

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found in the ledger")

// ErrAmbiguous is returned when a commit prefix matches several commits.
var ErrAmbiguous = errors.New("ambiguous commit prefix")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// timeFormat is fixed-width so that times sort as text.
const timeFormat = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeFormat)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("ledger time %q: %w", s, err)
	}
	return t, nil
}

// Store is the ledger over a database.
type Store struct {
	db  *sql.DB
	now func() time.Time
	// onBuild is called after each build row write (OnBuildChange).
	onBuild atomic.Pointer[func(app string)]
	// path is the file's absolute path.
	path string
}

// Open opens (creating if needed) the SQLite ledger at path and applies
// every migration it has not seen yet.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", abs, err)
	}
	s := &Store{db: db, now: time.Now, path: abs}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open ledger %s: %w", abs, explainOpen(abs, err))
	}
	opened(abs, 1)
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	opened(s.path, -1)
	return s.db.Close()
}

// DB is the underlying database, for parts of slipway that keep their own
// tables (added through migrations in this package).
func (s *Store) DB() *sql.DB { return s.db }

// SetClock replaces the clock that stamps rows; tests use it.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// Migration is one schema change, from migrations/NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in the order they apply.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 {
			return nil, fmt.Errorf("migration file %s: name it NNNN_name.sql", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d: give one another number", other, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	known := map[int]bool{}
	for _, m := range ms {
		known[m.Version] = true
	}
	for _, m := range ms {
		if err := s.apply(ctx, m); err != nil {
			return err
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		if !known[v] {
			return fmt.Errorf("the ledger has migration %04d_%s, which this slipway does not know: it was written by a newer slipway; run that version", v, name)
		}
	}
	return rows.Err()
}

// apply runs one migration in a transaction unless it was applied before.
func (s *Store) apply(ctx context.Context, m Migration) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
		return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, formatTime(s.now())); err != nil {
		return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	return nil
}

// AppliedMigrations lists the versions applied to this ledger, in order.
func (s *Store) AppliedMigrations(ctx context.Context) ([]int, error) {
	return queryAll(ctx, s.db, "read schema_migrations", func(r rowScanner) (v int, err error) {
		err = r.Scan(&v)
		return v, err
	}, `SELECT version FROM schema_migrations ORDER BY version`)
}

type rowScanner interface{ Scan(dest ...any) error }

// queryAll runs query and returns every row as scan reads it. what says
// what was being done, for errors.
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
