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

// TestSchemaLabels builds the sample app's three schema steps for real:
// its own schema 1, an expand (0002) and a contract (0003). Each image
// carries its schema as labels, the ledger row records it, and the store
// tests of each step run on SQLite (and on MariaDB and PostgreSQL when
// BIRTHDAY_TEST_MYSQL_URL and BIRTHDAY_TEST_POSTGRES_URL name them, as
// scripts/test does). Dialects that disagree fail the build before any
// test runs.
func TestSchemaLabels(t *testing.T) {
	ctx := context.Background()
	repo, v1 := testenv.SampleAppRepo(t)
	e := newEnv(t, repo, startRegistry(t), "go test ./internal/store")
	e.b.Schema.Migrations = []string{"internal/store/migrations/*"}
	v2 := testenv.SampleAppExpand(t, repo)
	v3 := testenv.SampleAppContract(t, repo)
	for _, tt := range []struct {
		commit string
		want   ledger.Schema
	}{
		{v1, ledger.Schema{Known: true, Version: 1}},
		{v2, ledger.Schema{Known: true, Version: 2}},
		{v3, ledger.Schema{Known: true, Version: 3, Floor: 2, FloorBy: "0003_drop_date_of_birth"}},
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

	// PostgreSQL's 0003 declares nothing: the build fails, saying which
	// files disagree, before anything is tested.
	p := filepath.Join(repo, "internal", "store", "migrations", "postgres", "0003_drop_date_of_birth.sql")
	body, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(body), "-- slipway: contract 2\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "commit", "-qam", "postgres: 0003 loses its declaration")
	res, err := e.b.Run(ctx, Request{Trigger: "test"})
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("build with dialects that disagree: %v, want ErrSchema", err)
	}
	want := "migration 3 declares contract 2 in internal/store/migrations/mysql/0003_drop_date_of_birth.sql but nothing in internal/store/migrations/postgres/0003_drop_date_of_birth.sql: declare it the same in every dialect"
	if !strings.Contains(err.Error(), want) || res.Build.State != ledger.BuildFailed || res.Build.TestDuration != 0 {
		t.Errorf("build = %s (tests %s): %v\nwant it failed before the tests, saying %q", res.Build.State, res.Build.TestDuration, err, want)
	}
}
