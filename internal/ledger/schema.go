package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Schema is what an image declares about the app's database schema
// (docs/migrations.md). The zero value is an image that declares nothing.
type Schema struct {
	// Known is true when the image declares its schema (its labels).
	Known bool `json:"-"`
	// Version is the schema version the code is built for: the highest
	// migration number in the image.
	Version int `json:"version"`
	// Floor is the oldest schema version code must be built for to run
	// once the image's migrations ran; 0: every older version runs.
	Floor int `json:"floor"`
	// FloorBy is the migration that declares Floor, such as
	// 0003_drop_date_of_birth.
	FloorBy string `json:"floorBy,omitempty"`
}

// IsZero reports whether s declares nothing (JSON omits it then).
func (s Schema) IsZero() bool { return !s.Known }

// UnmarshalJSON reads s from its JSON form: present means known.
func (s *Schema) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	type plain Schema
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = Schema(p)
	s.Known = true
	return nil
}

// columns returns s as the schema_version, schema_floor and
// schema_floor_by columns.
func (s Schema) columns() (int, int, string) {
	if !s.Known {
		return -1, 0, ""
	}
	return s.Version, s.Floor, s.FloorBy
}

func schemaOf(version, floor int, by string) Schema {
	if version < 0 {
		return Schema{}
	}
	return Schema{Known: true, Version: version, Floor: floor, FloorBy: by}
}

// Migrated is what an environment's database has been migrated to, as
// far as its deployments tell: every deployment that was not refused may
// have run its image's migrations (a release whose rollout failed too).
type Migrated struct {
	// Known is false when no deployment of the environment declared a
	// schema.
	Known bool `json:"-"`
	// Version is the high-water mark: the highest schema version deployed.
	Version int `json:"version"`
	// Floor is the oldest schema version code must be built for to run on
	// the environment's database now.
	Floor int `json:"floor"`
	// FloorBy is the migration that set the floor, and FloorCommit and
	// FloorDeployment the deployment that brought it.
	FloorBy         string `json:"floorBy,omitempty"`
	FloorCommit     string `json:"floorCommit,omitempty"`
	FloorDeployment int64  `json:"floorDeployment,omitempty"`
	FloorRelease    string `json:"floorRelease,omitempty"`
}

// IsZero reports whether nothing is known (JSON omits it then).
func (m Migrated) IsZero() bool { return !m.Known }

// UnmarshalJSON reads m from its JSON form: present means known.
func (m *Migrated) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	type plain Migrated
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*m = Migrated(p)
	m.Known = true
	return nil
}

// Migrated returns what env's database has been migrated to: the highest
// schema version and the highest floor of its deployments that were not
// refused.
func (l *Deployments) Migrated(ctx context.Context, env string) (Migrated, error) {
	where, args := l.where(`env = ? AND state <> 'refused' AND schema_version >= 0`, env)
	var version sql.NullInt64
	if err := l.db.QueryRowContext(ctx, `SELECT MAX(schema_version) FROM deployments `+where, args...).Scan(&version); err != nil {
		return Migrated{}, fmt.Errorf("read the schema of %s: %w", env, err)
	}
	if !version.Valid {
		return Migrated{}, nil
	}
	m := Migrated{Known: true, Version: int(version.Int64)}
	err := l.db.QueryRowContext(ctx, `SELECT schema_floor, schema_floor_by, commit_sha, id, release_name FROM deployments `+where+
		` AND schema_floor > 0 ORDER BY schema_floor DESC, id ASC LIMIT 1`, args...).
		Scan(&m.Floor, &m.FloorBy, &m.FloorCommit, &m.FloorDeployment, &m.FloorRelease)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Migrated{}, fmt.Errorf("read the schema of %s: %w", env, err)
	}
	return m, nil
}
