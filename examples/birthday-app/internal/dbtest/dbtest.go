// Package dbtest gives tests a fresh, empty database on each backend: a file
// in t.TempDir() for SQLite, and a new database on the MariaDB and PostgreSQL
// servers named by BIRTHDAY_TEST_MYSQL_URL and BIRTHDAY_TEST_POSTGRES_URL
// (scripts/testdb starts such servers). Without those variables the tests
// skip and say why, except under SLIPWAY_TEST_STRICT=1, where they fail.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Environment variables naming the test servers.
const (
	MySQLEnv    = "BIRTHDAY_TEST_MYSQL_URL"
	PostgresEnv = "BIRTHDAY_TEST_POSTGRES_URL"
)

// Backend is one kind of database and a way to get a fresh one.
type Backend struct {
	Name  string
	Fresh func(t testing.TB) string
}

// Backends lists SQLite, MySQL and PostgreSQL.
func Backends() []Backend {
	return []Backend{{"sqlite", SQLite}, {"mysql", MySQL}, {"postgres", Postgres}}
}

// Missing skips the test, or fails it when SLIPWAY_TEST_STRICT=1, because a
// dependency is missing. The message says what is missing and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("SLIPWAY_TEST_STRICT") == "1" {
		t.Fatalf("%s (SLIPWAY_TEST_STRICT=1 forbids skipping)", msg)
	}
	t.Skip(msg)
}

// SQLite returns sqlite:PATH for a new file in t.TempDir().
func SQLite(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "birthday.db")
}

func serverURL(t testing.TB, env string) *url.URL {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		Missing(t, "%s is not set: start test servers with `eval \"$(scripts/testdb up DIR)\"` (scripts/test does this)", env)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return u
}

func uniqueName() string {
	return "birthday_test_" + strings.ToLower(rand.Text()[:12])
}

// MySQL creates a new database on the server named by BIRTHDAY_TEST_MYSQL_URL,
// drops it when the test ends, and returns its URL.
func MySQL(t testing.TB) string {
	t.Helper()
	return freshDatabase(t, MySQLEnv, "")
}

// Postgres creates a new database on the server named by
// BIRTHDAY_TEST_POSTGRES_URL, drops it when the test ends, and returns its URL.
func Postgres(t testing.TB) string {
	t.Helper()
	// FORCE: connections the test left open do not keep it.
	return freshDatabase(t, PostgresEnv, " WITH (FORCE)")
}

// freshDatabase creates a database of a unique name on the server named by
// the variable env, drops it (DROP DATABASE name dropOptions) when the test
// ends, and returns its URL.
func freshDatabase(t testing.TB, env, dropOptions string) string {
	t.Helper()
	u := serverURL(t, env)
	admin := Open(t, u.String())
	name := uniqueName()
	if _, err := admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s on %s: %v", name, u.Redacted(), err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE "+name+dropOptions); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	fresh := *u
	fresh.Path = "/" + name
	return fresh.String()
}

// Open connects to the database at rawURL (in the service's URL forms) for a
// test to inspect directly, and closes it when the test ends.
func Open(t testing.TB, rawURL string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	switch {
	case strings.HasPrefix(rawURL, "sqlite:"):
		db, err = sql.Open("sqlite", strings.TrimPrefix(rawURL, "sqlite:")+"?_busy_timeout=10000")
	case strings.HasPrefix(rawURL, "mysql://"):
		u, perr := url.Parse(rawURL)
		if perr != nil {
			t.Fatalf("parse %s: %v", rawURL, perr)
		}
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.DBName = "tcp", u.Host, strings.TrimPrefix(u.Path, "/")
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		cfg.Timeout = 10 * time.Second
		c, cerr := mysql.NewConnector(cfg)
		if err = cerr; err == nil {
			db = sql.OpenDB(c)
		}
	case strings.HasPrefix(rawURL, "postgres://"):
		db, err = sql.Open("pgx", rawURL)
	default:
		t.Fatalf("dbtest.Open: unknown database URL %s", rawURL)
	}
	if err != nil {
		t.Fatalf("open %s: %v", rawURL, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
