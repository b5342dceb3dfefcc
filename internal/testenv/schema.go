package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sample service's schema in steps, for tests of migrations
// (docs/migrations.md). The service itself is at schema 1 (the users
// table). SampleAppNickname, SampleAppExpand and SampleAppContract follow
// one another.

type storeEdit struct {
	file, old, new string
}

// getSQL are the sample service's queries of a user, by dialect file.
var getSQL = map[string]string{
	"sqlite.go":   `"SELECT date_of_birth FROM users WHERE username = ?"`,
	"mysql.go":    `"SELECT DATE_FORMAT(date_of_birth, '%Y-%m-%d') FROM users WHERE username = ?"`,
	"postgres.go": `"SELECT to_char(date_of_birth, 'YYYY-MM-DD') FROM users WHERE username = $1"`,
}

// withNickname is a query of getSQL that also reads the column nickname:
// it cannot be prepared without it.
func withNickname(q string) string {
	return strings.TrimSuffix(q, `"`) + ` AND (nickname IS NULL OR nickname <> '')"`
}

// SampleAppNickname adds migration 0002 to the sample service in dir (a
// nullable column nickname, declared expand) with code that reads it,
// commits it and returns the commit: schema 2.
func SampleAppNickname(t testing.TB, dir string) string {
	t.Helper()
	var edits []storeEdit
	for file, q := range getSQL {
		edits = append(edits, storeEdit{file, q, withNickname(q)})
	}
	return schemaStep(t, dir, "0002_add_nickname.sql", "-- slipway: expand\n", map[string]string{
		"sqlite":   "ALTER TABLE users ADD COLUMN nickname TEXT;\n",
		"mysql":    "ALTER TABLE users ADD COLUMN nickname VARCHAR(64) NULL;\n",
		"postgres": "ALTER TABLE users ADD COLUMN nickname TEXT;\n",
	}, edits, "store: read nickname")
}

// SampleAppExpand adds migration 0003 after SampleAppNickname (a nullable
// column greeting, declared expand) with code that no longer reads
// nickname, commits it and returns the commit: schema 3. The version
// before it still runs on its schema.
func SampleAppExpand(t testing.TB, dir string) string {
	t.Helper()
	var edits []storeEdit
	for file, q := range getSQL {
		edits = append(edits, storeEdit{file, withNickname(q), q})
	}
	return schemaStep(t, dir, "0003_add_greeting.sql", "-- slipway: expand\n", map[string]string{
		"sqlite":   "ALTER TABLE users ADD COLUMN greeting TEXT;\n",
		"mysql":    "ALTER TABLE users ADD COLUMN greeting VARCHAR(64) NULL;\n",
		"postgres": "ALTER TABLE users ADD COLUMN greeting TEXT;\n",
	}, edits, "store: greeting; nickname no longer read (expand)")
}

// SampleAppContract adds migration 0004 after SampleAppExpand: it drops
// nickname, which SampleAppNickname's version reads, declared contract 3
// (code built for schema 3, SampleAppExpand's, no longer needs it); it
// commits it and returns the commit: schema 4.
func SampleAppContract(t testing.TB, dir string) string {
	t.Helper()
	body := "ALTER TABLE users DROP COLUMN nickname;\n"
	return schemaStep(t, dir, "0004_drop_nickname.sql", "-- slipway: contract 3\n",
		map[string]string{"sqlite": body, "mysql": body, "postgres": body}, nil, "store: drop nickname (contract 3)")
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
