package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"example.com/birthday-app/internal/birthday"
	"example.com/birthday-app/internal/dbtest"
)

func d(s string) birthday.Date {
	v, err := birthday.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return v
}

// TestBackends runs the same checks on every backend.
func TestBackends(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			url := b.Fresh(t)
			ctx := context.Background()
			s, err := Open(ctx, url)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if got := s.Backend(); got != b.Name {
				t.Errorf("Backend() = %q, want %q", got, b.Name)
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if _, err := s.Get(ctx, "Nobody"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get of a missing user: err = %v, want ErrNotFound", err)
			}
			long := strings.Repeat("x", birthday.MaxUsernameLen)
			puts := []struct {
				name string
				born string
			}{
				{"Ann", "1990-01-31"},
				{"ann", "2000-02-29"}, // names are case-sensitive
				{"Ann", "1991-12-01"}, // replaces
				{"Old", "0001-01-01"},
				{"Late", "9999-12-31"},
				{long, "1970-07-04"},
			}
			for _, p := range puts {
				if err := s.Put(ctx, p.name, d(p.born)); err != nil {
					t.Fatalf("Put(%s, %s): %v", p.name, p.born, err)
				}
			}
			want := map[string]string{"Ann": "1991-12-01", "ann": "2000-02-29", "Old": "0001-01-01", "Late": "9999-12-31", long: "1970-07-04"}
			got := map[string]string{}
			for name := range want {
				born, err := s.Get(ctx, name)
				if err != nil {
					t.Fatalf("Get(%s): %v", name, err)
				}
				got[name] = born.String()
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stored dates mismatch (-want +got):\n%s", diff)
			}
			if _, err := s.Get(ctx, "ANN"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(ANN) err = %v, want ErrNotFound: lookups must be case-sensitive", err)
			}
			s.Close()

			// Reopening applies nothing twice and keeps the data.
			s2, err := Open(ctx, url)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s2.Close()
			if born, err := s2.Get(ctx, "Ann"); err != nil || born != d("1991-12-01") {
				t.Errorf("after reopen Get(Ann) = %s, %v; want 1991-12-01", born, err)
			}
			checkMigrations(t, url)
		})
	}
}

// checkMigrations checks that every embedded migration is recorded once.
func checkMigrations(t *testing.T, url string) {
	t.Helper()
	ms, err := loadMigrations(mustBackend(url))
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, m := range ms {
		want = append(want, m.version)
	}
	rows, err := dbtest.Open(t, url).Query("SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	var got []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schema_migrations mismatch (-want +got):\n%s", diff)
	}
}

func mustBackend(url string) string {
	s, err := open(url)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	return s.dialect.name
}

// TestConcurrentOpen opens several stores on one fresh database at once, as
// replicas starting together do: every one succeeds and migrations apply once.
func TestConcurrentOpen(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			url := b.Fresh(t)
			const n = 6
			var wg sync.WaitGroup
			errs := make([]error, n)
			stores := make([]*Store, n)
			for i := range n {
				wg.Go(func() { stores[i], errs[i] = Open(context.Background(), url) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("Open #%d: %v", i, err)
				}
				defer stores[i].Close()
			}
			checkMigrations(t, url)
			// Every store writes; every store reads what the others wrote.
			for i, s := range stores {
				wg.Go(func() {
					if err := s.Put(context.Background(), "User"+string(rune('A'+i)), d("1980-05-05")); err != nil {
						t.Errorf("Put from store %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			for _, s := range stores {
				for i := range stores {
					if _, err := s.Get(context.Background(), "User"+string(rune('A'+i))); err != nil {
						t.Errorf("Get(User%c): %v", 'A'+i, err)
					}
				}
			}
		})
	}
}

func TestOpenRejectsBadURLs(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"birthday.db", `database URL "birthday.db" has no scheme: use sqlite:PATH, mysql://USER:PASSWORD@HOST:PORT/DATABASE or postgres://USER:PASSWORD@HOST:PORT/DATABASE`},
		{"redis://h/0", `database URL "redis://h/0": unknown scheme "redis": use sqlite, mysql or postgres`},
		{"sqlite:", `database URL "sqlite:": want sqlite:PATH with a file path that has no '?' or '#', e.g. sqlite:birthday.db`},
		{"mysql://u:secret@db:3306", `database URL "mysql://u:xxxxx@db:3306": want mysql://USER:PASSWORD@HOST:PORT/DATABASE`},
	}
	for _, tt := range tests {
		_, err := Open(context.Background(), tt.url)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Open(%q) error mismatch (-want +got):\n%s", tt.url, diff)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"mysql://u:secret@h/db":                         "mysql://u:xxxxx@h/db",
		"mysql://u@h/db":                                "mysql://u@h/db",
		"sqlite:/var/lib/b.db":                          "sqlite:/var/lib/b.db",
		"mysql://u:se%zz@h/db":                          "xxxxx@h/db",
	}
	for in, want := range tests {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
