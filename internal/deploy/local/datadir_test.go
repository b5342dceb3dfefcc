package local

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/deploy"
)

func TestResolveDataDir(t *testing.T) {
	spec := deploy.Spec{App: "birthday-app", Env: map[string]string{
		"DATABASE_URL": "sqlite:$DATA_DIR/birthday-app.db",
		"UPLOADS":      "${DATA_DIR}/uploads:$DATA_DIR",
		"PASSWORD":     "pa$$word$DATA",
		"OTHER":        "$DATA_DIRECTORY_IS_NOT_IT",
	}}
	got := resolveDataDir(spec, "/slipway/data")
	want := map[string]string{
		"DATABASE_URL": "sqlite:/slipway/data/birthday-app.db",
		"UPLOADS":      "/slipway/data/uploads:/slipway/data",
		"PASSWORD":     "pa$$word$DATA",
		"OTHER":        "$DATA_DIRECTORY_IS_NOT_IT",
	}
	if diff := cmp.Diff(want, got.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if spec.Env["DATABASE_URL"] != "sqlite:$DATA_DIR/birthday-app.db" {
		t.Errorf("the spec given was changed: %v", spec.Env)
	}
}

func TestReplicaDataDir(t *testing.T) {
	if got := replicaDataDir("/srv/slipway/envs/dev", deploy.IsolationNamespaces); got != "/slipway/data" {
		t.Errorf("in namespaces: %q", got)
	}
	if got := replicaDataDir("/srv/slipway/envs/dev", deploy.IsolationProcess); got != "/srv/slipway/envs/dev/data" {
		t.Errorf("as a plain process: %q", got)
	}
}
