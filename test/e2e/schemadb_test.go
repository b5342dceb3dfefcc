//go:build integration

package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/testenv"
)

// The databases of the migrations tests: the sample app's own SQLite file
// in each environment's data directory, or a database of its own on the
// MariaDB or PostgreSQL server of scripts/testdb, reached here through the
// server's own client (mariadb, psql) as an operator would.

// schemaDB is where one test's environments keep their data, and how the
// test reads the columns of their users table.
type schemaDB interface {
	// url is the DATABASE_URL of env; "" keeps the runtime's default.
	url(env string) string
	// columns are the columns of env's users table, in their order; none
	// before the table exists.
	columns(t *testing.T, env string) []string
}

// sqliteDB is each environment's default database: sqlite:$DATA_DIR/APP.db
// of the local runtime.
type sqliteDB struct{ dataDir string }

func (sqliteDB) url(string) string { return "" }

func (s sqliteDB) columns(t *testing.T, env string) []string {
	t.Helper()
	p := filepath.Join(s.dataDir, "run", demo.AppName, "envs", env, "data", demo.AppName+".db")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s's SQLite database: %v", env, err)
	}
	// Read-only: a connection of this process creates no file in the
	// environment's data directory, which the replicas' own user owns.
	db, err := sql.Open("sqlite", "file:"+p+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name FROM pragma_table_info('users') ORDER BY cid")
	if err != nil {
		t.Fatalf("%s's SQLite database: columns of users: %v", env, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols
}

// serverDB is a database of its own for each environment on a server of
// scripts/testdb.
type serverDB struct {
	dialect string // mysql or postgres
	client  string // the path of mariadb or psql
	base    *url.URL
	dbs     map[string]string // environment → database name
}

// newServerDB creates a database for each of envs on the server that the
// variable BIRTHDAY_TEST_MYSQL_URL or BIRTHDAY_TEST_POSTGRES_URL names,
// and drops them when the test ends (register it before anything that
// connects to them, so that it is stopped first).
func newServerDB(t *testing.T, dialect string, envs ...string) *serverDB {
	t.Helper()
	variable, client := "BIRTHDAY_TEST_MYSQL_URL", "mariadb"
	if dialect == "postgres" {
		variable, client = "BIRTHDAY_TEST_POSTGRES_URL", "psql"
	}
	raw := testenv.Env(t, variable, dialect+" server (eval \"$(scripts/testdb up DIR)\" prints it)")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", variable, err)
	}
	s := &serverDB{dialect: dialect, client: testenv.LookPath(t, client), base: u, dbs: map[string]string{}}
	admin := strings.TrimPrefix(u.Path, "/")
	for _, env := range envs {
		name := "slipway_e2e_" + env + "_" + strings.ToLower(rand.Text()[:10])
		s.query(t, admin, "CREATE DATABASE "+name)
		drop := "DROP DATABASE " + name
		if dialect == "postgres" {
			drop += " WITH (FORCE)"
		}
		t.Cleanup(func() { s.query(t, admin, drop) })
		s.dbs[env] = name
	}
	return s
}

func (s *serverDB) url(env string) string {
	u := *s.base
	u.Path = "/" + s.dbs[env]
	return u.String()
}

// query runs one statement in database db with the server's client and
// returns its rows, one a line, without headers.
func (s *serverDB) query(t *testing.T, db, q string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var cmd *exec.Cmd
	switch s.dialect {
	case "mysql":
		pw, _ := s.base.User.Password()
		cmd = exec.CommandContext(ctx, s.client, "--no-defaults", "--protocol=TCP", "--host="+s.base.Hostname(), "--port="+s.base.Port(),
			"--user="+s.base.User.Username(), "--database="+db, "--batch", "--skip-column-names", "--execute="+q)
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+pw)
	default:
		u := *s.base
		u.Path = "/" + db
		cmd = exec.CommandContext(ctx, s.client, "--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1",
			"--dbname="+u.String(), "--command="+q)
	}
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		t.Fatalf("%s on %s database %s: %s", q, s.dialect, db, msg)
	}
	return strings.TrimSpace(string(out))
}

func (s *serverDB) columns(t *testing.T, env string) []string {
	t.Helper()
	schema := "DATABASE()"
	if s.dialect == "postgres" {
		schema = "current_schema()"
	}
	out := s.query(t, s.dbs[env], "SELECT column_name FROM information_schema.columns WHERE table_schema = "+schema+
		" AND table_name = 'users' ORDER BY ordinal_position")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// editConfig changes the configuration file at path.
func editConfig(t *testing.T, path string, change func(c *config.Config)) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	change(cfg)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := config.Write(f, cfg); err != nil {
		t.Fatal(err)
	}
}
