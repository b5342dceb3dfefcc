// Package store keeps users' dates of birth in SQLite, MySQL/MariaDB or
// PostgreSQL, chosen by a URL, and migrates the schema when it opens.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"example.com/birthday-app/internal/birthday"
)

// ErrNotFound is returned by Get for a user that was never saved.
var ErrNotFound = errors.New("user not found")

// Store is a users table in one database.
type Store struct {
	backend string
	// read serves queries; write serves changes. They are the same pool
	// except on SQLite, where a single writer connection avoids lock
	// contention between the pool's own connections.
	read, write *sql.DB
	get, put    *sql.Stmt
	dialect     dialect
	closeOnce   sync.Once
	closeErr    error
}

// dialect is what differs between the three databases.
type dialect struct {
	name     string
	getSQL   string
	putSQL   string
	migrate  func(ctx context.Context, s *Store, ms []migration) error
	redacted string
}

// Open connects to the database named by rawURL, applies any migrations that
// it lacks, and prepares the statements the service uses. rawURL is one of
//
//	sqlite:PATH
//	mysql://USER:PASSWORD@HOST:PORT/DATABASE
//	postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable
func Open(ctx context.Context, rawURL string) (*Store, error) {
	s, err := open(rawURL)
	if err != nil {
		return nil, err
	}
	if err := s.setup(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func open(rawURL string) (*Store, error) {
	scheme, _, ok := strings.Cut(rawURL, ":")
	if !ok {
		return nil, fmt.Errorf("database URL %q has no scheme: use sqlite:PATH, mysql://USER:PASSWORD@HOST:PORT/DATABASE or postgres://USER:PASSWORD@HOST:PORT/DATABASE", Redact(rawURL))
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3":
		return openSQLite(rawURL)
	case "mysql", "mariadb":
		return openMySQL(rawURL)
	case "postgres", "postgresql":
		return openPostgres(rawURL)
	default:
		return nil, fmt.Errorf("database URL %q: unknown scheme %q: use sqlite, mysql or postgres", Redact(rawURL), scheme)
	}
}

func (s *Store) setup(ctx context.Context) error {
	ms, err := loadMigrations(s.dialect.name)
	if err != nil {
		return err
	}
	if err := s.dialect.migrate(ctx, s, ms); err != nil {
		return fmt.Errorf("migrate %s database %s: %w", s.backend, s.dialect.redacted, err)
	}
	return s.prepare(ctx)
}

// prepare prepares the statements the service uses.
func (s *Store) prepare(ctx context.Context) error {
	var err error
	if s.get, err = s.read.PrepareContext(ctx, s.dialect.getSQL); err != nil {
		return fmt.Errorf("prepare query on %s: %w", s.dialect.redacted, err)
	}
	if s.put, err = s.write.PrepareContext(ctx, s.dialect.putSQL); err != nil {
		return fmt.Errorf("prepare upsert on %s: %w", s.dialect.redacted, err)
	}
	return nil
}

// Backend names the kind of database: "sqlite", "mysql" or "postgres".
func (s *Store) Backend() string { return s.backend }

// Get returns the date of birth saved for username, or ErrNotFound.
func (s *Store) Get(ctx context.Context, username string) (birthday.Date, error) {
	var text string
	err := s.get.QueryRowContext(ctx, username).Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return birthday.Date{}, ErrNotFound
	}
	if err != nil {
		return birthday.Date{}, fmt.Errorf("read user %s: %w", username, err)
	}
	d, err := birthday.ParseDate(text)
	if err != nil {
		return birthday.Date{}, fmt.Errorf("read user %s: stored date %q: %w", username, text, err)
	}
	return d, nil
}

// Put saves username's date of birth, replacing any earlier one.
func (s *Store) Put(ctx context.Context, username string, born birthday.Date) error {
	if _, err := s.put.ExecContext(ctx, username, born.String()); err != nil {
		return fmt.Errorf("save user %s: %w", username, err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.dialect.redacted, err)
	}
	if s.write != s.read {
		if err := s.write.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s: %w", s.dialect.redacted, err)
		}
	}
	return nil
}

// Close releases the connections. Calling it again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		for _, st := range []*sql.Stmt{s.get, s.put} {
			if st != nil {
				st.Close()
			}
		}
		s.closeErr = s.read.Close()
		if s.write != s.read {
			s.closeErr = errors.Join(s.closeErr, s.write.Close())
		}
	})
	return s.closeErr
}

// Redact returns rawURL with any password replaced by "xxxxx", for logs and
// error messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(rawURL, "@"); i >= 0 && err != nil {
			return "xxxxx" + rawURL[i:]
		}
		return rawURL
	}
	return u.Redacted()
}
