package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sample service's schema in three steps, for tests of migrations
// (docs/migrations.md): its own schema 1 (users.date_of_birth), then
// SampleAppExpand, then SampleAppContract.

type storeEdit struct {
	dialect, file, old, new string
}

// SampleAppExpand adds migration 0002 to the sample service in dir (a
// nullable column birth_date, declared expand) with code that writes both
// columns and reads birth_date first, commits it and returns the commit.
// The version before it still runs on the new schema.
func SampleAppExpand(t testing.TB, dir string) string {
	t.Helper()
	migration := map[string]string{
		"sqlite":   "ALTER TABLE users ADD COLUMN birth_date TEXT;\n",
		"mysql":    "ALTER TABLE users ADD COLUMN birth_date DATE NULL;\n",
		"postgres": "ALTER TABLE users ADD COLUMN birth_date DATE;\n",
	}
	edits := []storeEdit{
		{"sqlite", "sqlite.go", `"SELECT date_of_birth FROM users WHERE username = ?"`,
			`"SELECT COALESCE(birth_date, date_of_birth) FROM users WHERE username = ?"`},
		{"sqlite", "sqlite.go", `"INSERT INTO users (username, date_of_birth) VALUES (?, ?) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth"`,
			`"INSERT INTO users (username, date_of_birth, birth_date) VALUES (?1, ?2, ?2) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth, birth_date = excluded.birth_date"`},
		{"mysql", "mysql.go", `"SELECT DATE_FORMAT(date_of_birth, '%Y-%m-%d') FROM users WHERE username = ?"`,
			`"SELECT DATE_FORMAT(COALESCE(birth_date, date_of_birth), '%Y-%m-%d') FROM users WHERE username = ?"`},
		{"mysql", "mysql.go", `"INSERT INTO users (username, date_of_birth) VALUES (?, ?) ON DUPLICATE KEY UPDATE date_of_birth = VALUES(date_of_birth)"`,
			`"INSERT INTO users (username, date_of_birth, birth_date) VALUES (?, ?, date_of_birth) ON DUPLICATE KEY UPDATE date_of_birth = VALUES(date_of_birth), birth_date = VALUES(date_of_birth)"`},
		{"postgres", "postgres.go", `"SELECT to_char(date_of_birth, 'YYYY-MM-DD') FROM users WHERE username = $1"`,
			`"SELECT to_char(COALESCE(birth_date, date_of_birth), 'YYYY-MM-DD') FROM users WHERE username = $1"`},
		{"postgres", "postgres.go", `"INSERT INTO users (username, date_of_birth) VALUES ($1, $2::date) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth"`,
			`"INSERT INTO users (username, date_of_birth, birth_date) VALUES ($1, $2::date, $2::date) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth, birth_date = excluded.birth_date"`},
	}
	return schemaStep(t, dir, "0002_add_birth_date.sql", "-- slipway: expand\n", migration, edits, "store: birth_date beside date_of_birth (expand)")
}

// SampleAppContract adds migration 0003 to the sample service in dir after
// SampleAppExpand: it copies date_of_birth into birth_date and drops
// date_of_birth, which the version before SampleAppExpand reads (declared
// contract 2), with code that reads birth_date only; it commits and
// returns the commit.
func SampleAppContract(t testing.TB, dir string) string {
	t.Helper()
	body := "UPDATE users SET birth_date = date_of_birth WHERE birth_date IS NULL;\nALTER TABLE users DROP COLUMN date_of_birth;\n"
	migration := map[string]string{"sqlite": body, "mysql": body, "postgres": body}
	edits := []storeEdit{
		{"sqlite", "sqlite.go", `"SELECT COALESCE(birth_date, date_of_birth) FROM users WHERE username = ?"`,
			`"SELECT birth_date FROM users WHERE username = ?"`},
		{"sqlite", "sqlite.go", `"INSERT INTO users (username, date_of_birth, birth_date) VALUES (?1, ?2, ?2) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth, birth_date = excluded.birth_date"`,
			`"INSERT INTO users (username, birth_date) VALUES (?, ?) ON CONFLICT (username) DO UPDATE SET birth_date = excluded.birth_date"`},
		{"mysql", "mysql.go", `"SELECT DATE_FORMAT(COALESCE(birth_date, date_of_birth), '%Y-%m-%d') FROM users WHERE username = ?"`,
			`"SELECT DATE_FORMAT(birth_date, '%Y-%m-%d') FROM users WHERE username = ?"`},
		{"mysql", "mysql.go", `"INSERT INTO users (username, date_of_birth, birth_date) VALUES (?, ?, date_of_birth) ON DUPLICATE KEY UPDATE date_of_birth = VALUES(date_of_birth), birth_date = VALUES(date_of_birth)"`,
			`"INSERT INTO users (username, birth_date) VALUES (?, ?) ON DUPLICATE KEY UPDATE birth_date = VALUES(birth_date)"`},
		{"postgres", "postgres.go", `"SELECT to_char(COALESCE(birth_date, date_of_birth), 'YYYY-MM-DD') FROM users WHERE username = $1"`,
			`"SELECT to_char(birth_date, 'YYYY-MM-DD') FROM users WHERE username = $1"`},
		{"postgres", "postgres.go", `"INSERT INTO users (username, date_of_birth, birth_date) VALUES ($1, $2::date, $2::date) ON CONFLICT (username) DO UPDATE SET date_of_birth = excluded.date_of_birth, birth_date = excluded.birth_date"`,
			`"INSERT INTO users (username, birth_date) VALUES ($1, $2::date) ON CONFLICT (username) DO UPDATE SET birth_date = excluded.birth_date"`},
	}
	return schemaStep(t, dir, "0003_drop_date_of_birth.sql", "-- slipway: contract 2\n", migration, edits, "store: drop date_of_birth (contract 2)")
}

// schemaStep writes migration name (declaration, then each dialect's body)
// and the code edits, and commits them with msg.
func schemaStep(t testing.TB, dir, name, declaration string, migration map[string]string, edits []storeEdit, msg string) string {
	t.Helper()
	store := filepath.Join(dir, "internal", "store")
	for dialect, body := range migration {
		p := filepath.Join(store, "migrations", dialect, name)
		if err := os.WriteFile(p, []byte(declaration+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range edits {
		p := filepath.Join(store, e.file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(b), e.old) != 1 {
			t.Fatalf("the sample app's %s no longer has %s: change the schema steps of internal/testenv/schema.go with it", e.file, e.old)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), e.old, e.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", msg)
	return Git(t, dir, "rev-parse", "HEAD")
}
