package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrNotMigrated means the database lacks migrations this version of the
// service needs: `birthday-app migrate` applies them.
var ErrNotMigrated = errors.New("the database schema is not migrated")

// OpenWithoutMigrating connects to the database named by rawURL (see Open)
// without changing its schema: a release phase (`birthday-app migrate`)
// has migrated it. Every migration this version brings must have been
// applied, else it returns an error matching ErrNotMigrated that names the
// missing ones; migrations it does not know (a newer version's) are fine.
func OpenWithoutMigrating(ctx context.Context, rawURL string) (*Store, error) {
	s, err := open(rawURL)
	if err != nil {
		return nil, err
	}
	if err := s.checkMigrated(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) checkMigrated(ctx context.Context) error {
	ms, err := loadMigrations(s.dialect.name)
	if err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, s.read)
	if err != nil {
		applied = map[int]bool{} // no schema_migrations: nothing applied
	}
	var missing []string
	for _, m := range ms {
		if !applied[m.version] {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s lacks %s: run birthday-app migrate first (or set MIGRATE_ON_START=true)", ErrNotMigrated, s.dialect.redacted, strings.Join(missing, ", "))
	}
	return nil
}

// Migrate applies to the database named by rawURL the migrations it lacks,
// under the same lock as Open, and returns how many the database has
// applied in all (this version's and any newer one's).
func Migrate(ctx context.Context, rawURL string) (int, error) {
	s, err := open(rawURL)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	ms, err := loadMigrations(s.dialect.name)
	if err != nil {
		return 0, err
	}
	if err := s.dialect.migrate(ctx, s, ms); err != nil {
		return 0, fmt.Errorf("migrate %s database %s: %w", s.backend, s.dialect.redacted, err)
	}
	applied, err := appliedVersions(ctx, s.read)
	if err != nil {
		return 0, err
	}
	return len(applied), s.Close()
}
