package ledger

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestOutcomes(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	st.SetClock(func() time.Time { return now })
	web, api := st.Deployments().ForApp("web"), st.Deployments().ForApp("api")
	// add records a deployment of l created now and ended a minute later
	// in state (in flight when state is not final).
	add := func(l *Deployments, env string, kind DeploymentKind, state DeploymentState) int64 {
		d := &Deployment{Env: env, Kind: kind, Trigger: "test", Commit: strings.Repeat("c", 40), State: StatePending, Step: "deploy"}
		if err := l.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
		if state.Final() {
			d.State = state
			if err := l.Update(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Hour)
		return d.ID
	}
	add(web, "prod", KindRelease, StateSucceeded)          // live long before
	live := add(web, "prod", KindRollback, StateSucceeded) // the last one live before the window
	add(web, "prod", KindRelease, StateRolledBack)         // not live
	add(web, "prod", KindScale, StateSucceeded)            // not a new version
	since := now
	a := add(web, "prod", KindRelease, StateFailed)
	add(web, "dev", KindDeploy, StateSucceeded)   // another environment
	add(api, "prod", KindRelease, StateSucceeded) // another app
	b := add(web, "prod", KindScale, StateSucceeded)
	add(web, "prod", KindRelease, StateRolling) // in flight
	got, err := web.Outcomes(ctx, "prod", since)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, o := range got {
		ids = append(ids, o.ID)
		// Where it ended is kept only for what did not succeed.
		if o.Finished.IsZero() || o.Commit == "" || o.Kind == "" || o.State == "" || (o.Step == "deploy") != (o.State != StateSucceeded) {
			t.Errorf("outcome %+v lacks a field", o)
		}
	}
	if diff := cmp.Diff([]int64{live, a, b}, ids); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}

	// Read from the index alone.
	plan := strings.Join(queryPlan(t, st, `SELECT `+outcomeColumns+` FROM deployments WHERE app = ? AND env = ? AND finished_at <> '' AND finished_at >= ? ORDER BY finished_at, id`,
		"web", "prod", "2026"), "; ")
	if !strings.Contains(plan, "COVERING INDEX deployments_app_env_finished") {
		t.Errorf("plan of Outcomes = %q, want it to read deployments_app_env_finished alone", plan)
	}
}

// queryPlan returns the steps of SQLite's plan for query with args.
func queryPlan(t *testing.T, st *Store, query string, args ...any) []string {
	t.Helper()
	rows, err := st.DB().QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatalf("plan of %s: %v", query, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// The ledger's own times read as time.Parse reads them; others still do.
func TestParseTimeFast(t *testing.T) {
	for _, s := range []string{
		"2026-11-20T10:02:00.000000000Z", "2026-02-28T23:59:59.999999999Z", "0001-01-01T00:00:00.000000001Z",
		"", "2026-11-20T10:02:00Z", "2026-13-20T10:02:00.000000000Z", "2026-11-20T10:02:0x.000000000Z", "2026-11-20 10:02:00.000000000Z",
	} {
		want, wantErr := parseTime(s)
		got, err := parseTimeFast(s)
		if !got.Equal(want) || (err == nil) != (wantErr == nil) {
			t.Errorf("parseTimeFast(%q) = %v, %v; parseTime: %v, %v", s, got, err, want, wantErr)
		}
	}
}
