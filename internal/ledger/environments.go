package ledger

import (
	"context"
	"encoding/json"
	"fmt"

	"slipway.dev/slipway/internal/deploy"
)

// SaveDesired records spec as the desired state of its environment,
// replacing the previous one.
func (s *Store) SaveDesired(ctx context.Context, spec deploy.Spec) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("save desired state of %s: %w", spec.Environment, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO environments (environment, spec, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (environment) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`,
		spec.Environment, string(b), formatTime(s.now()))
	if err != nil {
		return fmt.Errorf("save desired state of %s: %w", spec.Environment, err)
	}
	return nil
}

// DeleteDesired forgets the desired state of env (it was stopped).
func (s *Store) DeleteDesired(ctx context.Context, env string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM environments WHERE environment = ?`, env); err != nil {
		return fmt.Errorf("delete desired state of %s: %w", env, err)
	}
	return nil
}

// LoadDesired returns the desired state of every environment, by name.
func (s *Store) LoadDesired(ctx context.Context) ([]deploy.Spec, error) {
	return queryAll(ctx, s.db, "load desired states", func(r rowScanner) (deploy.Spec, error) {
		var env, raw string
		var spec deploy.Spec
		if err := r.Scan(&env, &raw); err != nil {
			return spec, err
		}
		if err := json.Unmarshal([]byte(raw), &spec); err != nil {
			return spec, fmt.Errorf("desired state of %s: %w", env, err)
		}
		return spec, nil
	}, `SELECT environment, spec FROM environments ORDER BY environment`)
}
