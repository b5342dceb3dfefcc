//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// TestMigrationsEndToEnd takes the demo's sample app through a column
// read, an expand and a contract (docs/migrations.md) on the local runtime,
// once with each SQL dialect of the app (in parallel): the environments'
// own SQLite files, and databases of their own on the MariaDB and
// PostgreSQL servers of scripts/testdb. The migrations run as the release
// phase (`birthday-app migrate`; replicas do not migrate). The contract's
// release is refused while the version that reads the column is live, and
// goes out once the expand is; a rollback past the contract is then
// refused, one to the expand is not and runs; a user saved before the
// changes is still there after them. The database's columns are read after
// each step: the column is dropped only when the contract is allowed.
func TestMigrationsEndToEnd(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "mysql", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			var db schemaDB
			if dialect != "sqlite" {
				db = newServerDB(t, dialect, "dev", "prod")
			}
			e, token := launchDemo(t, false, func(e *env, _ string) {
				if db == nil {
					db = sqliteDB{dataDir: e.ws.DataDir}
				}
				editConfig(t, e.ws.Config, func(c *config.Config) { migrationsConfig(c, db.url) })
			})
			client := api.NewClient(e.apiURL, token)
			migrationsRun{
				e:       e,
				client:  client,
				db:      db,
				serving: e.checkTruth,
				prodURL: e.prodURL,
				phases: func(ran, skipped []ledger.Deployment) {
					for _, d := range ran {
						if s := step(t, client, d.ID, "release"); s.State != ledger.StepSucceeded || !strings.Contains(s.Message, "database migrated") {
							t.Errorf("release phase of %s %s (deployment %d): %s: %s", d.Kind, d.Commit[:7], d.ID, s.State, s.Message)
						}
					}
					for _, d := range skipped {
						if names := stepNames(t, client, d.ID); slices.Contains(names, "release") {
							t.Errorf("%s %s of %s (deployment %d) ran the release phase: steps %v", d.State, d.Kind, d.Commit[:7], d.ID, names)
						}
					}
				},
			}.run(t)
		})
	}
}

// migrationsConfig makes the migrations of c's app its release phase and
// gives each environment the database dbURL names ("": the runtime's
// default). For speed, commits are tested with `go vet` only, dev runs no
// smoke test and each environment one replica: what these tests check is
// what slipway does with the images' schemas, not the app's own tests.
func migrationsConfig(c *config.Config, dbURL func(env string) string) {
	c.Release.Command = config.Command{"/app/" + demo.AppName, "migrate"}
	c.Test.Command = "go vet ./..."
	for i := range c.Environments {
		e := &c.Environments[i]
		e.Env = map[string]string{"MIGRATE_ON_START": "false"}
		e.DatabaseURL = dbURL(e.Name)
		e.Smoke.Command = ""
		e.Replicas = 1
	}
}

// migrationsRun is the migrations scenario on one runtime and database.
type migrationsRun struct {
	e      *env
	client *api.Client
	// db reads the environments' databases; nil when the test cannot
	// (no pod runs on the test cluster).
	db schemaDB
	// serving checks that prod runs commit as release rc.
	serving func(commit, rc string)
	// prodURL is where prod answers HTTP; "" when nothing answers.
	prodURL string
	// phases checks that each deployment of ran, prod's successful
	// releases, ran the release phase, and none of skipped did.
	phases func(ran, skipped []ledger.Deployment)
}

func (r migrationsRun) run(t *testing.T) {
	e, ws := r.e, r.e.ws
	start := time.Now()
	mark := func(what string) { t.Logf("%s: %s", time.Since(start).Round(100*time.Millisecond), what) }
	base := []string{"username", "date_of_birth"}
	columns := func(when, env string, want ...string) {
		t.Helper()
		if r.db == nil {
			return
		}
		if diff := cmp.Diff(append(base, want...), r.db.columns(t, env)); diff != "" {
			t.Errorf("%s: the columns of %s's users (-want +got):\n%s", when, env, diff)
		}
	}
	withAlice := func(when string) {
		t.Helper()
		if r.prodURL == "" {
			return
		}
		if got := get(t, r.prodURL+"/hello/alice"); !strings.Contains(got, "Hello, alice!") {
			t.Errorf("GET /hello/alice %s = %s", when, got)
		}
	}

	v0 := git(t, ws.Bare, "rev-parse", "master")
	e.waitFor("v0 on prod", func() bool {
		p := envOf(e.status(), "prod")
		return p.Commit != nil && *p.Commit == v0 && p.Healthy && p.Rollout == nil
	})
	if p := envOf(e.status(), "prod"); p.Schema == nil || p.Schema.Version != 1 || p.Schema.Floor != 0 {
		t.Fatalf("prod's schema = %+v, want version 1", p.Schema)
	}
	columns("v0 on prod", "prod")
	mark("v0 on prod")
	verified := func(commit string) {
		e.waitFor(commit[:7]+" verified on dev", func() bool {
			d := envOf(e.status(), "dev")
			return d.Commit != nil && *d.Commit == commit && d.Healthy && d.Rollout == nil
		})
	}
	release := func(what, commit string) string {
		t.Helper()
		if out, errOut, code := e.slipway("release", commit); code != 0 {
			t.Fatalf("release of %s: exit %d\n%s%s", what, code, out, errOut)
		}
		return *envOf(e.status(), "prod").Release
	}
	rollback := func(what string, to ...string) {
		t.Helper()
		if out, errOut, code := e.slipway(append([]string{"rollback"}, to...)...); code != 0 {
			t.Fatalf("rollback %s: exit %d\n%s%s", what, code, out, errOut)
		}
	}
	// v1 reads the column nickname.
	v1 := testenv.SampleAppNickname(t, ws.Clone)
	git(t, ws.Clone, "push", "-q", "origin", "HEAD:master")
	verified(v1)
	rc1 := release("v1", v1)
	r.serving(v1, rc1)
	columns("v1 released", "prod", "nickname")
	mark("v1 released")
	if r.prodURL != "" {
		put(t, r.prodURL+"/hello/alice", `{"dateOfBirth":"1990-05-17"}`)
	}
	// v2 adds a column and stops reading nickname; v3 drops nickname.
	v2 := testenv.SampleAppExpand(t, ws.Clone)
	git(t, ws.Clone, "push", "-q", "origin", "HEAD:master")
	verified(v2)
	v3 := testenv.SampleAppContract(t, ws.Clone)
	git(t, ws.Clone, "push", "-q", "origin", "HEAD:master")
	verified(v3)
	// dev takes every commit: its database has lost nickname.
	columns("v3 on dev", "dev", "greeting")
	mark("v2 and v3 verified on dev")

	// The contract while v1 is live: refused, saying what to ship first;
	// nothing ran on prod's database.
	out, errOut, code := e.slipway("release", v3)
	if code != 1 {
		t.Fatalf("release of v3 over v1: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"release of " + v3[:7] + " to prod refused: its migration 0004_drop_nickname needs code built for schema 3 or later, and prod runs " + rc1 + " (" + v1[:7] + "), built for schema 2",
		"release first a commit built for schema 3 or later"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal %q\nlacks %q", errOut, want)
		}
	}
	r.serving(v1, rc1)
	columns("v3's release refused", "prod", "nickname")
	mark("v3's release refused")

	// The expand goes out, and v1 can still be rolled back to, and runs.
	release("v2", v2)
	columns("v2 released", "prod", "nickname", "greeting")
	rollback("to v1 after the expand")
	r.serving(v1, rc1)
	withAlice("on v1 after the expand")
	rc2 := release("v2 again", v2)
	r.serving(v2, rc2)
	mark("v2 released, rolled back to v1, released again")

	// With the expand live, the contract goes out; alice is still there.
	rc3 := release("v3", v3)
	r.serving(v3, rc3)
	columns("v3 released", "prod", "greeting")
	withAlice("after the contract")
	mark("v3 released")
	p := envOf(e.status(), "prod")
	if p.Migrated == nil || p.Migrated.Version != 4 || p.Migrated.Floor != 3 || p.Migrated.FloorRelease != rc3 {
		t.Errorf("prod migrated = %+v", p.Migrated)
	}

	// v1 can no longer run: its rollback is refused; v2 can, and runs.
	out, errOut, code = e.slipway("rollback", rc1)
	if code != 1 || !strings.Contains(errOut, "rollback of prod to "+rc1+" ("+v1[:7]+") refused: "+rc1+" ("+v1[:7]+") is built for schema 2, but the database of prod has been migrated by 0004_drop_nickname") {
		t.Fatalf("rollback to v1 after the contract: exit %d\n%s%s", code, out, errOut)
	}
	r.serving(v3, rc3)
	rollback("to v2 after the contract", rc2)
	r.serving(v2, rc2)
	columns("rolled back to v2", "prod", "greeting")
	withAlice("on v2 after the contract")
	mark("rollback to v1 refused, to v2 done")

	// status and history show each version's schema.
	out, _, _ = e.slipway("status")
	if want := "prod: schema 3; database migrated to 4, runs code built for schema 3 or later (0004_drop_nickname)"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	out, _, _ = e.slipway("history", "prod", "--limit", "20")
	if !strings.Contains(out, " 4 (floor 3) ") || !strings.Contains(out, "refused: "+rc1) {
		t.Errorf("history of prod:\n%s", out)
	}
	h, err := r.client.History(context.Background(), demo.AppName, "prod", 50)
	if err != nil {
		t.Fatal(err)
	}
	schemaOf := map[string]ledger.Schema{
		v0: {Known: true, Version: 1},
		v1: {Known: true, Version: 2},
		v2: {Known: true, Version: 3},
		v3: {Known: true, Version: 4, Floor: 3, FloorBy: "0004_drop_nickname"},
	}
	var ran, skipped, rows []ledger.Deployment
	var got []string
	for _, d := range slices.Backward(h.Deployments) {
		if d.Kind != ledger.KindRelease && d.Kind != ledger.KindRollback {
			continue
		}
		rows = append(rows, d)
		got = append(got, fmt.Sprintf("%s %s %s", d.Kind, d.Commit[:7], d.State))
		if diff := cmp.Diff(schemaOf[d.Commit], d.Schema); diff != "" {
			t.Errorf("the schema of %s %s in history (-want +got):\n%s", d.Kind, d.Commit[:7], diff)
		}
		if d.Kind == ledger.KindRelease && d.State == ledger.StateSucceeded {
			ran = append(ran, d)
		} else {
			skipped = append(skipped, d)
		}
	}
	var want []string
	for _, w := range [][3]any{
		{ledger.KindRelease, v0, ledger.StateSucceeded},
		{ledger.KindRelease, v1, ledger.StateSucceeded},
		{ledger.KindRelease, v3, ledger.StateRefused},
		{ledger.KindRelease, v2, ledger.StateSucceeded},
		{ledger.KindRollback, v1, ledger.StateSucceeded},
		{ledger.KindRelease, v2, ledger.StateSucceeded},
		{ledger.KindRelease, v3, ledger.StateSucceeded},
		{ledger.KindRollback, v1, ledger.StateRefused},
		{ledger.KindRollback, v2, ledger.StateSucceeded},
	} {
		want = append(want, fmt.Sprintf("%s %s %s", w[0], w[1].(string)[:7], w[2]))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prod's releases and rollbacks, oldest first (-want +got):\n%s", diff)
	}
	r.phases(ran, skipped)
	mark("history and release phases checked")
}

func put(t *testing.T, url, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.Status + " " + b.String()
}
