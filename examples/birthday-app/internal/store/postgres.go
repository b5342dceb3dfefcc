package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// migrationLockKey identifies the advisory lock held while migrating; advisory
// locks are scoped to the current database.
const migrationLockKey = 0x62697274686461 // "birthda"

func openPostgres(rawURL string) (*Store, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database URL %q: %w", Redact(rawURL), err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxLifetime(30 * time.Minute)
	return &Store{
		backend: "postgres",
		read:    db,
		write:   db,
		dialect: dialect{
			name:     "postgres",
			getSQL:   "SELECT to_char(date_of_birth, 'YYYY-MM-DD') FROM users WHERE username = $1",
			putSQL:   "INSERT INTO users (username, date_of_birth) VALUES ($1, $2::date) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth",
			migrate:  migratePostgres,
			redacted: Redact(rawURL),
		},
	}, nil
}

// migratePostgres holds a session advisory lock while it applies migrations,
// each in a transaction together with its schema_migrations row.
func migratePostgres(ctx context.Context, s *Store, ms []migration) error {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("lock for migrations: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
		if err := apply(ctx, tx, m, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit migration %s: %w", m.name, err)
		}
	}
	return nil
}
