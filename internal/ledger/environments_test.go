package ledger

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/deploy"
)

func TestDesiredState(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	prod := deploy.Spec{
		Environment: "prod", App: "birthday-app", Image: "127.0.0.1:5000/app@sha256:" + strings.Repeat("ab", 32),
		Commit: "0123456789012345678901234567890123456789", Version: "RC20260101_1200", Replicas: 3,
		Env: map[string]string{"LOG_LEVEL": "info"}, ListenAddr: "0.0.0.0:8080", ReadinessPath: "/readyz",
		Strategy: deploy.Strategy{MaxSurge: 1, ReadyTimeout: time.Minute}, Cause: "release",
	}
	dev := prod
	dev.Environment, dev.Replicas, dev.Env = "dev", 1, nil
	for _, sp := range []deploy.Spec{prod, dev} {
		if err := s.SaveDesired(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	prod.Replicas = 6
	if err := s.SaveDesired(ctx, prod); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// The state outlives the process: open the file again.
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.LoadDesired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]deploy.Spec{dev, prod}, got); diff != "" {
		t.Errorf("LoadDesired (-want +got):\n%s", diff)
	}
	if err := s.DeleteDesired(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	got, err = s.LoadDesired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]deploy.Spec{prod}, got); diff != "" {
		t.Errorf("after DeleteDesired(dev) (-want +got):\n%s", diff)
	}
}

// TestDesiredStateDatabaseURL checks that specs recorded before the
// configuration gave DATABASE_URL get the database the local runtime gave
// them then, and that other specs stay as they are.
func TestDesiredStateDatabaseURL(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	base := deploy.Spec{
		App: "birthday-app", Image: "127.0.0.1:5000/app@sha256:" + strings.Repeat("ab", 32),
		Commit: "0123456789012345678901234567890123456789", Version: "RC20260101_1200", Replicas: 1,
	}
	noEnv, otherEnv, ownDB := base, base, base
	noEnv.Environment = "dev"
	otherEnv.Environment, otherEnv.Env = "prod", map[string]string{"LOG_LEVEL": "info"}
	ownDB.Environment, ownDB.Env = "staging", map[string]string{"DATABASE_URL": "postgres://app@db/app"}
	for _, sp := range []deploy.Spec{noEnv, otherEnv, ownDB} {
		if err := s.SaveDesired(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	// As in a ledger written before the migration.
	if _, err := s.DB().ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = 101`); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.LoadDesired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	noEnv.Env = map[string]string{"DATABASE_URL": "sqlite:$DATA_DIR/birthday-app.db"}
	otherEnv.Env = map[string]string{"LOG_LEVEL": "info", "DATABASE_URL": "sqlite:$DATA_DIR/birthday-app.db"}
	if diff := cmp.Diff([]deploy.Spec{noEnv, otherEnv, ownDB}, got); diff != "" {
		t.Errorf("LoadDesired (-want +got):\n%s", diff)
	}
}
