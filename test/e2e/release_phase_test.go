//go:build integration

package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/ledger"
)

// TestReleasePhaseEndToEnd runs the sample service with its migrations as
// a release phase (`birthday-app migrate`) and replicas that never migrate
// (MIGRATE_ON_START=false), which start only on a migrated database: dev
// and prod each run the command once, before any replica of the new
// version starts, and the prod release serves requests that need the
// schema. A commit whose migration fails is rolled out nowhere: dev keeps
// serving the version before it, and the failing command's output is in
// the deployment's steps.
func TestReleasePhaseEndToEnd(t *testing.T) {
	e, token := startDemo(t, true, func(e *env, _ string) {
		cfg, err := config.Load(e.ws.Config)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Release.Command = config.Command{"/app/" + demo.AppName, "migrate"}
		for i := range cfg.Environments {
			cfg.Environments[i].Env = map[string]string{"MIGRATE_ON_START": "false"}
		}
		f, err := os.Create(e.ws.Config)
		if err != nil {
			t.Fatal(err)
		}
		if err := config.Write(f, cfg); err != nil {
			t.Fatal(err)
		}
		f.Close()
	})
	ws := e.ws
	client := api.NewClient(e.apiURL, token)

	c0 := strings.TrimSpace(git(t, ws.Clone, "rev-parse", "HEAD"))
	e.waitFor("c0 on dev", func() bool {
		d := envOf(e.status(), "dev")
		return d.Commit != nil && *d.Commit == c0 && d.Healthy && d.Rollout == nil
	})
	// The demo's release branch is at c0 already: prod releases it once
	// it is verified on dev.
	e.waitFor("c0 on prod", func() bool {
		p := envOf(e.status(), "prod")
		return p.Commit != nil && *p.Commit == c0 && p.Healthy && p.Rollout == nil
	})
	// Replicas that do not migrate serve: the release phase migrated
	// prod's own database.
	req, _ := http.NewRequest(http.MethodPut, e.prodURL+"/hello/Ann", strings.NewReader(`{"dateOfBirth":"1990-01-31"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT /hello/Ann on prod: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, env := range []string{"dev", "prod"} {
		d := lastDeployment(t, client, env)
		steps := stepNames(t, client, d.ID)
		if r, dep := slices.Index(steps, "release"), slices.Index(steps, "deploy"); r < 0 || dep < r {
			t.Errorf("%s's deployment %d: steps %v; want release before deploy", env, d.ID, steps)
		}
		rel := step(t, client, d.ID, "release")
		if rel.State != ledger.StepSucceeded || !strings.Contains(rel.Message, "database migrated") {
			t.Errorf("%s's release step: %s: %s", env, rel.State, rel.Message)
		}
		dep := step(t, client, d.ID, "deploy")
		if dep.Started.Before(rel.Finished) {
			t.Errorf("%s: the rollout started at %s, before the release phase ended at %s", env, dep.Started, rel.Finished)
		}
	}

	// A migration the app's own tests pass (their databases are empty) and
	// that fails on a database holding users, as dev's now does.
	req, _ = http.NewRequest(http.MethodPut, e.devURL+"/hello/Bob", strings.NewReader(`{"dateOfBirth":"1991-02-28"}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT /hello/Bob on dev: %v %v", resp, err)
	}
	resp.Body.Close()
	c1 := e.push("A migration that fails on a database with users", func(dir string) {
		// Every dialect gets the migration (the schema convention wants the
		// same numbers in each); this test's environments run SQLite.
		for _, dialect := range []string{"sqlite", "mysql", "postgres"} {
			writeFile(t, filepath.Join(dir, "internal/store/migrations", dialect, "0002_users_check.sql"),
				"-- slipway: expand\nCREATE TABLE users_check (users_before INTEGER CHECK (users_before = 0));\nINSERT INTO users_check SELECT count(*) FROM users;\n")
		}
	})
	var failed ledger.Deployment
	e.waitFor("c1 to fail on dev", func() bool {
		failed = lastDeployment(t, client, "dev")
		return failed.Commit == c1 && failed.State.Final()
	})
	if failed.State != ledger.StateFailed || failed.Step != "release" || !strings.Contains(failed.Reason, "release phase failed") {
		t.Errorf("c1 on dev: %s at %s: %s; want failed at the release phase", failed.State, failed.Step, failed.Reason)
	}
	rel := step(t, client, failed.ID, "release")
	if rel.State != ledger.StepFailed || !strings.Contains(rel.Message, "CHECK constraint failed") {
		t.Errorf("c1's release step on dev: %s: %s; want failed with the migration's error", rel.State, rel.Message)
	}
	if v := version(e.devURL); v != c0 {
		t.Errorf("dev serves %q after c1's release phase failed, want c0 %s", v, c0)
	}
	if names := stepNames(t, client, failed.ID); strings.Contains(strings.Join(names, " "), "deploy") {
		t.Errorf("c1 on dev: steps %v; nothing may be rolled out", names)
	}
}

func lastDeployment(t *testing.T, c *api.Client, env string) ledger.Deployment {
	t.Helper()
	h, err := c.History(context.Background(), demo.AppName, env, 1)
	if err != nil || len(h.Deployments) == 0 {
		t.Fatalf("history of %s: %v, %d rows", env, err, len(h.Deployments))
	}
	return h.Deployments[0]
}

func stepNames(t *testing.T, c *api.Client, id int64) []string {
	t.Helper()
	d, err := c.DeploymentDetail(context.Background(), demo.AppName, id)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range d.Steps {
		names = append(names, s.Name)
	}
	return names
}

func step(t *testing.T, c *api.Client, id int64, name string) ledger.Step {
	t.Helper()
	d, err := c.DeploymentDetail(context.Background(), demo.AppName, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("deployment %d has no step %s: %+v", id, name, d.Steps)
	return ledger.Step{}
}
