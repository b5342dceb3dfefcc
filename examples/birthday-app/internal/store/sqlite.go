package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// sqliteParams applies to every connection: wait up to 10 s for a lock held
// by another connection or process, write-ahead logging so readers never
// block the writer, and BEGIN IMMEDIATE so a transaction takes the write lock
// up front instead of failing when it upgrades.
const sqliteParams = "_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate"

// sqliteBusyTimeout is the _busy_timeout above.
const sqliteBusyTimeout = 10 * time.Second

func openSQLite(rawURL string) (*Store, error) {
	_, path, _ := strings.Cut(rawURL, ":")
	if strings.HasPrefix(path, "//") {
		path = path[2:] // sqlite:///abs/path and sqlite://rel/path
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("database URL %q: want sqlite:PATH with a file path that has no '?' or '#', e.g. sqlite:birthday.db", rawURL)
	}
	dsn := path + "?" + sqliteParams
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", dsn)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	// SQLite allows one writer at a time per file: one connection for writes
	// queues them in this process instead of in SQLite's busy handler.
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)
	read.SetConnMaxIdleTime(5 * time.Minute)
	return &Store{
		backend: "sqlite",
		read:    read,
		write:   write,
		dialect: dialect{
			name:     "sqlite",
			getSQL:   "SELECT date_of_birth FROM users WHERE username = ?",
			putSQL:   "INSERT INTO users (username, date_of_birth) VALUES (?, ?) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth",
			migrate:  migrateSQLite,
			redacted: "sqlite:" + path,
		},
	}, nil
}

// migrateSQLite applies the migrations in one BEGIN IMMEDIATE transaction:
// other processes sharing the file wait for it and then find them applied.
//
// SQLite's busy handler does not cover every lock taken while a fresh file
// is first switched to WAL by several processes at once: then it answers
// SQLITE_BUSY at once. Such an attempt changed nothing, so it is retried
// with a growing pause, for as long as the busy timeout allows.
func migrateSQLite(ctx context.Context, s *Store, ms []migration) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	pause := 10 * time.Millisecond
	for {
		err := migrateSQLiteOnce(ctx, s, ms)
		if err == nil || !isSQLiteBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// isSQLiteBusy reports whether err is SQLITE_BUSY (5) or one of its
// extended codes.
func isSQLiteBusy(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == 5
}

func migrateSQLiteOnce(ctx context.Context, s *Store, ms []migration) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("lock for migrations: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	applied, err := appliedVersions(ctx, tx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		if err := apply(ctx, tx, m, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)"); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
}
