package store

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

func openMySQL(rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database URL %q: %w", Redact(rawURL), err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	if u.Host == "" || dbName == "" || strings.Contains(dbName, "/") {
		return nil, fmt.Errorf("database URL %q: want mysql://USER:PASSWORD@HOST:PORT/DATABASE", Redact(rawURL))
	}
	// Query parameters are the driver's own DSN parameters (tls, timeout, ...).
	cfg, err := mysql.ParseDSN("/" + "?" + u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("database URL %q: parameters: %w", Redact(rawURL), err)
	}
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = dbName
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("database URL %q: %w", Redact(rawURL), err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxLifetime(5 * time.Minute)
	return &Store{
		backend: "mysql",
		read:    db,
		write:   db,
		dialect: dialect{
			name:     "mysql",
			getSQL:   "SELECT DATE_FORMAT(date_of_birth, '%Y-%m-%d') FROM users WHERE username = ?",
			putSQL:   "INSERT INTO users (username, date_of_birth) VALUES (?, ?) ON DUPLICATE KEY UPDATE date_of_birth = VALUES(date_of_birth)",
			migrate:  migrateMySQL,
			redacted: Redact(rawURL),
		},
	}, nil
}

// migrateMySQL holds a named lock (GET_LOCK, scoped to this database) while
// it applies migrations. MySQL commits DDL at once, so each migration is
// applied and then recorded; the lock keeps other replicas out meanwhile.
func migrateMySQL(ctx context.Context, s *Store, ms []migration) error {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(CONCAT('birthday-app.migrate.', DATABASE()), 60)").Scan(&got); err != nil {
		return fmt.Errorf("lock for migrations: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("lock for migrations: another process held the migration lock for 60s; check for a stuck replica")
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(CONCAT('birthday-app.migrate.', DATABASE()))")
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INT NOT NULL PRIMARY KEY,
		name       VARCHAR(255) NOT NULL,
		applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE = InnoDB`); err != nil {
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
		if err := apply(ctx, conn, m, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)"); err != nil {
			return err
		}
	}
	return nil
}
