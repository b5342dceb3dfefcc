package schema

import (
	"errors"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestParseMigration(t *testing.T) {
	tests := []struct {
		name, path, text string
		want             Migration
		err              string
	}{
		{"undeclared", "m/0001_users.sql", "CREATE TABLE users (id INT);\n",
			Migration{Version: 1, Name: "0001_users", Path: "m/0001_users.sql"}, ""},
		{"expand", "m/0002_add.sql", "-- slipway: expand\nALTER TABLE users ADD COLUMN x TEXT;\n",
			Migration{Version: 2, Name: "0002_add", Path: "m/0002_add.sql", Declared: "expand"}, ""},
		{"contract, spaces", "m/0003_drop.sql", "-- Drops x.\n  --slipway:contract 2  \nALTER TABLE users DROP COLUMN x;\n",
			Migration{Version: 3, Name: "0003_drop", Path: "m/0003_drop.sql", Declared: "contract", Contract: 2}, ""},
		{"contract of its own version", "m/0003_rename.sql", "-- slipway: contract 3\n",
			Migration{Version: 3, Name: "0003_rename", Path: "m/0003_rename.sql", Declared: "contract", Contract: 3}, ""},
		{"other comments", "m/0004_x.sql", "-- slipway is the delivery system\n-- note: slipway: expand is not on its own line\n",
			Migration{Version: 4, Name: "0004_x", Path: "m/0004_x.sql"}, ""},
		{"bad name", "m/add_column.sql", "", Migration{},
			`migrations break slipway's convention: m/add_column.sql: name it NNNN_name.sql, NNNN being its number in the schema's order`},
		{"number 0", "m/0000_init.sql", "", Migration{},
			`migrations break slipway's convention: m/0000_init.sql: number migrations from 1 (0001_name.sql)`},
		{"unknown declaration", "m/0002_x.sql", "\n-- slipway: breaks 1\n", Migration{},
			`migrations break slipway's convention: m/0002_x.sql:2: "-- slipway: breaks 1" is not a declaration slipway knows: write "-- slipway: expand" or "-- slipway: contract K" (code built for a schema older than K no longer runs after this migration)`},
		{"contract without K", "m/0002_x.sql", "-- slipway: contract\n", Migration{},
			`migrations break slipway's convention: m/0002_x.sql:1: "-- slipway: contract" is not a declaration slipway knows: write "-- slipway: expand" or "-- slipway: contract K" (code built for a schema older than K no longer runs after this migration)`},
		{"contract above itself", "m/0002_x.sql", "-- slipway: contract 5\n", Migration{},
			`migrations break slipway's convention: m/0002_x.sql:1: contract 5 is above the migration's own number 2: code built for schema 2 is the newest this migration can require`},
		{"contract 0", "m/0002_x.sql", "-- slipway: contract 0\n", Migration{},
			`migrations break slipway's convention: m/0002_x.sql:1: contract 0: K is a schema version from 1 to 2, the oldest one code must be built for to run after this migration`},
		{"two declarations", "m/0002_x.sql", "-- slipway: expand\n-- slipway: contract 1\n", Migration{},
			`migrations break slipway's convention: m/0002_x.sql:2: a second slipway declaration (the first is on line 1): keep one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMigration(tt.path, []byte(tt.text))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v\nwant %s", err, tt.err)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error does not match ErrInvalid: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRead(t *testing.T) {
	dialects := func(files map[string]string) fstest.MapFS {
		fsys := fstest.MapFS{}
		for name, text := range files {
			for _, d := range []string{"sqlite", "mysql", "postgres"} {
				fsys["db/"+d+"/"+name] = &fstest.MapFile{Data: []byte(text)}
			}
		}
		return fsys
	}
	base := map[string]string{
		"0001_users.sql":         "-- slipway: expand\nCREATE TABLE users (a TEXT);\n",
		"0002_add_b.sql":         "-- slipway: expand\nALTER TABLE users ADD COLUMN b TEXT;\n",
		"0003_drop_a.sql":        "-- slipway: contract 2\nALTER TABLE users DROP COLUMN a;\n",
		"0004_index.sql":         "CREATE INDEX users_b ON users (b);\n",
		"README.md":              "not a migration",
		"0005_rename_b_to_c.sql": "-- slipway: contract 5\n",
	}
	tests := []struct {
		name     string
		fsys     fstest.MapFS
		patterns []string
		want     Info
		err      string
	}{
		{"three dialects", dialects(base), []string{"db/*"}, Info{Version: 5, Floor: 5, FloorBy: "0005_rename_b_to_c"}, ""},
		{"named one by one", dialects(base), []string{"db/sqlite", "db/mysql", "db/sqlite"}, Info{Version: 5, Floor: 5, FloorBy: "0005_rename_b_to_c"}, ""},
		{"only expands", dialects(map[string]string{"0001_a.sql": "", "0002_b.sql": "-- slipway: expand\n"}), []string{"db/*"}, Info{Version: 2}, ""},
		{"empty directory", fstest.MapFS{"db/x/.keep": {}}, []string{"db/x"}, Info{}, ""},
		{"the first of two equal floors", dialects(map[string]string{"0001_a.sql": "", "0002_b.sql": "-- slipway: contract 1\n", "0003_c.sql": "-- slipway: contract 1\n"}),
			[]string{"db/*"}, Info{Version: 3, Floor: 1, FloorBy: "0002_b"}, ""},
		{"no directory", dialects(base), []string{"db/oracle"}, Info{},
			`migrations break slipway's convention: schema.migrations "db/oracle" names no directory of the commit: fix the path, or add the directory`},
		{"a dialect lacks one", func() fstest.MapFS {
			f := dialects(base)
			delete(f, "db/postgres/0004_index.sql")
			return f
		}(), []string{"db/*"}, Info{},
			`migrations break slipway's convention: db/postgres has no migration 0004 (db/mysql has db/mysql/0004_index.sql): every dialect's directory needs the same numbers`},
		{"a dialect has one more", func() fstest.MapFS {
			f := dialects(base)
			f["db/sqlite/0006_more.sql"] = &fstest.MapFile{}
			return f
		}(), []string{"db/*"}, Info{},
			`migrations break slipway's convention: db/mysql has no migration 0006 (db/sqlite has db/sqlite/0006_more.sql): every dialect's directory needs the same numbers`},
		{"declarations differ", func() fstest.MapFS {
			f := dialects(base)
			f["db/postgres/0003_drop_a.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE users DROP COLUMN a;\n")}
			return f
		}(), []string{"db/*"}, Info{},
			`migrations break slipway's convention: migration 3 declares contract 2 in db/mysql/0003_drop_a.sql but nothing in db/postgres/0003_drop_a.sql: declare it the same in every dialect`},
		{"two files, one number", func() fstest.MapFS {
			f := dialects(base)
			f["db/mysql/0002_other.sql"] = &fstest.MapFile{}
			return f
		}(), []string{"db/*"}, Info{},
			`migrations break slipway's convention: db/mysql/0002_add_b.sql and db/mysql/0002_other.sql share number 2: give one the next free number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := Read(tt.fsys, tt.patterns)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v\nwant %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   Info
		ok     bool
		err    string
	}{
		{"none", map[string]string{"org.opencontainers.image.revision": "abc"}, Info{}, false, ""},
		{"all", map[string]string{LabelVersion: "3", LabelFloor: "2", LabelFloorBy: "0003_drop"}, Info{3, 2, "0003_drop"}, true, ""},
		{"version only", map[string]string{LabelVersion: "7"}, Info{Version: 7}, true, ""},
		{"floor only", map[string]string{LabelFloor: "2"}, Info{}, false,
			`migrations break slipway's convention: image labels: dev.slipway.schema.floor is set but dev.slipway.schema.version is not: set both (docs/migrations.md)`},
		{"not a number", map[string]string{LabelVersion: "v3"}, Info{}, false,
			`migrations break slipway's convention: image labels: dev.slipway.schema.version="v3" is not a schema version: give the highest migration number, such as 3`},
		{"floor above version", map[string]string{LabelVersion: "2", LabelFloor: "3"}, Info{}, false,
			`migrations break slipway's convention: image labels: dev.slipway.schema.floor=3 is above dev.slipway.schema.version=2: a migration can only require code built for its own schema or an older one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := FromLabels(tt.labels)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v\nwant %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok {
				t.Errorf("ok = %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if ok {
				back, _, _ := FromLabels(got.Labels())
				if diff := cmp.Diff(got, back); diff != "" {
					t.Errorf("labels round trip (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func FuzzParseMigration(f *testing.F) {
	f.Add("db/0003_drop.sql", "-- slipway: contract 2\nALTER TABLE users DROP COLUMN a;\n")
	f.Add("db/0002_add.sql", "-- slipway: expand\n")
	f.Add("db/0001_x.sql", "--slipway:contract 99999999999999999999\n")
	f.Fuzz(func(t *testing.T, p, text string) {
		m, err := ParseMigration(p, []byte(text))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not match ErrInvalid: %v", err)
			}
			return
		}
		if m.Version < 1 || m.Contract < 0 || m.Contract > m.Version {
			t.Fatalf("ParseMigration(%q) = %+v: contract outside 0..version", p, m)
		}
	})
}
