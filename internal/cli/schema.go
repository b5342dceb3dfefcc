package cli

import (
	"fmt"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// schemaCell is a history row's SCHEMA: the schema version the image is
// built for, and the floor its migrations set when they set one; "-" when
// the image declares nothing (docs/migrations.md).
func schemaCell(s ledger.Schema) string {
	switch {
	case !s.Known:
		return "-"
	case s.Floor > 0:
		return fmt.Sprintf("%d (floor %d)", s.Version, s.Floor)
	}
	return fmt.Sprint(s.Version)
}

// schemaNote is the status line of an environment whose image declares
// its schema: the version it runs and what its database was migrated to.
func schemaNote(e pipeline.EnvStatus) string {
	if e.Schema == nil {
		return ""
	}
	line := fmt.Sprintf("schema %d", e.Schema.Version)
	if m := e.Migrated; m != nil && m.Known {
		line += fmt.Sprintf("; database migrated to %d", m.Version)
		if m.Floor > 0 {
			line += fmt.Sprintf(", runs code built for schema %d or later (%s)", m.Floor, m.FloorBy)
		}
	}
	return line
}
