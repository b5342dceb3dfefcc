//go:build integration

package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/schema"
	"slipway.dev/slipway/internal/testenv"
)

// TestSchemaLabels builds the sample app's schema steps for real: its own
// schema 1, a column read (0002), an expand (0003) and a contract (0004).
// Each image carries its schema as labels, the ledger row records it, and
// the store tests of each step run on SQLite (and on MariaDB and
// PostgreSQL when BIRTHDAY_TEST_MYSQL_URL and BIRTHDAY_TEST_POSTGRES_URL
// name them, as scripts/test does). Dialects that disagree fail the build
// before any test runs.
func TestSchemaLabels(t *testing.T) {
	ctx := context.Background()
	repo, v0 := testenv.SampleAppRepo(t)
	e := newEnv(t, repo, startRegistry(t), "go test ./internal/store")
	e.b.Schema.Migrations = []string{"internal/store/migrations/*"}
	v1 := testenv.SampleAppNickname(t, repo)
	v2 := testenv.SampleAppExpand(t, repo)
	v3 := testenv.SampleAppContract(t, repo)
	for _, tt := range []struct {
		commit string
		want   ledger.Schema
	}{
		{v0, ledger.Schema{Known: true, Version: 1}},
		{v1, ledger.Schema{Known: true, Version: 2}},
		{v2, ledger.Schema{Known: true, Version: 3}},
		{v3, ledger.Schema{Known: true, Version: 4, Floor: 3, FloorBy: "0004_drop_nickname"}},
	} {
		res, err := e.b.Run(ctx, Request{Rev: tt.commit, Trigger: "test"})
		if err != nil {
			t.Fatalf("build of %s: %v", tt.commit[:7], err)
		}
		if diff := cmp.Diff(tt.want, res.Build.Schema); diff != "" {
			t.Errorf("%s: build's schema (-want +got):\n%s", tt.commit[:7], diff)
		}
		img, err := e.client.Image(ctx, e.repo, res.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		info, ok, err := schema.FromLabels(cf.Config.Labels)
		if err != nil || !ok || info.Version != tt.want.Version || info.Floor != tt.want.Floor || info.FloorBy != tt.want.FloorBy {
			t.Errorf("%s: image labels %v give %+v, %v, %v", tt.commit[:7], cf.Config.Labels, info, ok, err)
		}
		// Built before: the labels are read back from the registry.
		again, err := e.b.Run(ctx, Request{Rev: tt.commit, Trigger: "test"})
		if err != nil || !again.Skipped {
			t.Fatalf("second build of %s: skipped %v, %v", tt.commit[:7], again.Skipped, err)
		}
		if diff := cmp.Diff(tt.want, again.Build.Schema); diff != "" {
			t.Errorf("%s: second build's schema (-want +got):\n%s", tt.commit[:7], diff)
		}
	}

	// PostgreSQL's 0004 declares nothing: the build fails, saying which
	// files disagree, before anything is tested.
	p := filepath.Join(repo, "internal", "store", "migrations", "postgres", "0004_drop_nickname.sql")
	body, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(body), "-- slipway: contract 3\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "commit", "-qam", "postgres: 0004 loses its declaration")
	res, err := e.b.Run(ctx, Request{Trigger: "test"})
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("build with dialects that disagree: %v, want ErrSchema", err)
	}
	want := "migration 4 declares contract 3 in internal/store/migrations/mysql/0004_drop_nickname.sql but nothing in internal/store/migrations/postgres/0004_drop_nickname.sql: declare it the same in every dialect"
	if !strings.Contains(err.Error(), want) || res.Build.State != ledger.BuildFailed || res.Build.TestDuration != 0 {
		t.Errorf("build = %s (tests %s): %v\nwant it failed before the tests, saying %q", res.Build.State, res.Build.TestDuration, err, want)
	}
}
