package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"example.com/birthday-app/internal/dbtest"
)

// TestMigrateThenOpenWithoutMigrating is the release phase's order on
// every backend: a replica that does not migrate refuses a database that
// lacks migrations, saying what to run; `migrate` (run by several
// processes at once here, as two deployments could) applies them under
// the migration lock; then the replica opens it.
func TestMigrateThenOpenWithoutMigrating(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			url := b.Fresh(t)
			ctx := context.Background()
			_, err := OpenWithoutMigrating(ctx, url)
			if !errors.Is(err, ErrNotMigrated) || !strings.Contains(err.Error(), "0001_create_users.sql") || !strings.Contains(err.Error(), "run birthday-app migrate first") {
				t.Fatalf("OpenWithoutMigrating before migrate: %v; want ErrNotMigrated naming the missing migration", err)
			}
			ms, err := loadMigrations(b.Name)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			counts := make([]int, 4)
			errs := make([]error, 4)
			for i := range counts {
				wg.Go(func() { counts[i], errs[i] = Migrate(ctx, url) })
			}
			wg.Wait()
			for i := range counts {
				if errs[i] != nil || counts[i] != len(ms) {
					t.Errorf("Migrate %d: %d migrations, %v; want %d", i, counts[i], errs[i], len(ms))
				}
			}
			s, err := OpenWithoutMigrating(ctx, url)
			if err != nil {
				t.Fatalf("OpenWithoutMigrating after migrate: %v", err)
			}
			defer s.Close()
			if err := s.Put(ctx, "Ann", d("1990-01-31")); err != nil {
				t.Fatal(err)
			}
		})
	}
}
