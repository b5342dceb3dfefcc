package cli

import (
	"testing"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

func TestSchemaNote(t *testing.T) {
	tests := []struct {
		name string
		e    pipeline.EnvStatus
		want string
	}{
		{"nothing declared", pipeline.EnvStatus{}, ""},
		{"expands only", pipeline.EnvStatus{Schema: &ledger.Schema{Known: true, Version: 2}, Migrated: &ledger.Migrated{Known: true, Version: 2}},
			"schema 2; database migrated to 2"},
		{"after a contract", pipeline.EnvStatus{Schema: &ledger.Schema{Known: true, Version: 2},
			Migrated: &ledger.Migrated{Known: true, Version: 3, Floor: 2, FloorBy: "0003_drop_date_of_birth"}},
			"schema 2; database migrated to 3, runs code built for schema 2 or later (0003_drop_date_of_birth)"},
	}
	for _, tt := range tests {
		if got := schemaNote(tt.e); got != tt.want {
			t.Errorf("%s: schemaNote = %q, want %q", tt.name, got, tt.want)
		}
	}
}
