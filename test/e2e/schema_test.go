//go:build integration

package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/testenv"
)

// TestMigrationsEndToEnd takes the demo's sample app through a column
// read, an expand and a contract (docs/migrations.md) on the local runtime,
// with SQLite: the contract's release is refused while the version that
// reads the column is live, and goes out once the expand is; a rollback
// past the contract is then refused, one to the expand is not and runs;
// a user saved before the changes is still there after them.
func TestMigrationsEndToEnd(t *testing.T) {
	e, _ := startDemo(t, false, nil)
	ws := e.ws

	v0 := git(t, ws.Bare, "rev-parse", "master")
	e.waitFor("v0 on prod", func() bool {
		p := envOf(e.status(), "prod")
		return p.Commit != nil && *p.Commit == v0 && p.Healthy && p.Rollout == nil
	})
	if p := envOf(e.status(), "prod"); p.Schema == nil || p.Schema.Version != 1 || p.Schema.Floor != 0 {
		t.Fatalf("prod's schema = %+v, want version 1", p.Schema)
	}
	verified := func(commit string) {
		e.waitFor(commit[:7]+" verified on dev", func() bool {
			d := envOf(e.status(), "dev")
			return d.Commit != nil && *d.Commit == commit && d.Rollout == nil
		})
	}
	release := func(what, commit string) string {
		t.Helper()
		if out, errOut, code := e.slipway("release", commit); code != 0 {
			t.Fatalf("release of %s: exit %d\n%s%s", what, code, out, errOut)
		}
		return *envOf(e.status(), "prod").Release
	}
	// v1 reads the column nickname.
	v1 := testenv.SampleAppNickname(t, ws.Clone)
	git(t, ws.Clone, "push", "-q", "origin", "HEAD:master")
	verified(v1)
	rc1 := release("v1", v1)
	put(t, e.prodURL+"/hello/alice", `{"dateOfBirth":"1990-05-17"}`)
	// v2 adds a column and stops reading nickname; v3 drops nickname.
	v2 := testenv.SampleAppExpand(t, ws.Clone)
	git(t, ws.Clone, "push", "-q", "origin", "HEAD:master")
	verified(v2)
	v3 := testenv.SampleAppContract(t, ws.Clone)
	git(t, ws.Clone, "push", "-q", "origin", "HEAD:master")
	verified(v3)

	// The contract while v1 is live: refused, saying what to ship first.
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
	e.checkTruth(v1, rc1)

	// The expand goes out, and v1 can still be rolled back to.
	release("v2", v2)
	if out, errOut, code = e.slipway("rollback"); code != 0 {
		t.Fatalf("rollback to v1 after the expand: exit %d\n%s%s", code, out, errOut)
	}
	e.checkTruth(v1, rc1)
	rc2 := release("v2 again", v2)

	// With the expand live, the contract goes out; alice is still there.
	rc3 := release("v3", v3)
	e.checkTruth(v3, rc3)
	if got := get(t, e.prodURL+"/hello/alice"); !strings.Contains(got, "Hello, alice!") {
		t.Errorf("GET /hello/alice after the contract = %s", got)
	}
	p := envOf(e.status(), "prod")
	if p.Migrated == nil || p.Migrated.Version != 4 || p.Migrated.Floor != 3 || p.Migrated.FloorRelease != rc3 {
		t.Errorf("prod migrated = %+v", p.Migrated)
	}

	// v1 can no longer run: its rollback is refused; v2 can, and runs.
	out, errOut, code = e.slipway("rollback", rc1)
	if code != 1 || !strings.Contains(errOut, "rollback of prod to "+rc1+" ("+v1[:7]+") refused: "+rc1+" ("+v1[:7]+") is built for schema 2, but the database of prod has been migrated by 0004_drop_nickname") {
		t.Fatalf("rollback to v1 after the contract: exit %d\n%s%s", code, out, errOut)
	}
	e.checkTruth(v3, rc3)
	if out, errOut, code = e.slipway("rollback", rc2); code != 0 {
		t.Fatalf("rollback to v2 after the contract: exit %d\n%s%s", code, out, errOut)
	}
	e.checkTruth(v2, rc2)
	if got := get(t, e.prodURL+"/hello/alice"); !strings.Contains(got, "Hello, alice!") {
		t.Errorf("GET /hello/alice on v2 after the contract = %s", got)
	}
	out, _, _ = e.slipway("history", "prod", "--limit", "20")
	if !strings.Contains(out, " 4 (floor 3) ") || !strings.Contains(out, "refused: "+rc1) {
		t.Errorf("history of prod:\n%s", out)
	}
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
