package pipeline

import (
	"testing"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
)

// TestSpecDatabaseURL checks what each runtime's environments get as
// DATABASE_URL.
func TestSpecDatabaseURL(t *testing.T) {
	d := ledger.Deployment{Env: "dev", Commit: "0123456789abcdef0123456789abcdef01234567", Replicas: 1}
	for _, tt := range []struct {
		name      string
		runtime   string
		configure func(e *config.Environment)
		want      string // "" for none
	}{
		{"local default", config.RuntimeLocal, func(*config.Environment) {}, "sqlite:$DATA_DIR/birthday-app.db"},
		{"local databaseURL", config.RuntimeLocal, func(e *config.Environment) { e.DatabaseURL = "postgres://app@db/app" }, "postgres://app@db/app"},
		{"local env", config.RuntimeLocal, func(e *config.Environment) { e.Env = map[string]string{"DATABASE_URL": "sqlite:/srv/a.db"} }, "sqlite:/srv/a.db"},
		{"kubernetes default", config.RuntimeKubernetes, func(*config.Environment) {}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.App, cfg.Runtime = "birthday-app", tt.runtime
			tt.configure(&cfg.Environments[0])
			spec, err := Runtime{Config: cfg}.Spec(d)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := spec.Env["DATABASE_URL"]
			if tt.want == "" && ok {
				t.Errorf("DATABASE_URL = %q, want none", got)
			} else if got != tt.want {
				t.Errorf("DATABASE_URL = %q, want %q", got, tt.want)
			}
		})
	}
}
