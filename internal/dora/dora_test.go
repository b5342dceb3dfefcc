package dora_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"slipway.dev/slipway/internal/dora"
	"slipway.dev/slipway/internal/ledger"
)

// at reads "11-24 09:10" as that minute of 2026, UTC.
func at(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse("2006-01-02 15:04", "2026-"+s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// row is one deployment of the hand-built history: created at created,
// ended (with state) at finished, or still in flight when finished is "".
type row struct {
	app, env string
	kind     ledger.DeploymentKind
	commit   string
	state    ledger.DeploymentState
	step     string
	note     string
	forced   bool
	created  string
	finished string
}

// record writes rows into a real ledger, in order, each stamped by the
// ledger's own clock at the times the row gives.
func record(t testing.TB, st *ledger.Store, rows []row) {
	t.Helper()
	ctx := context.Background()
	var now time.Time
	st.SetClock(func() time.Time { return now })
	for _, r := range rows {
		now = at(t, r.created)
		d := &ledger.Deployment{Env: r.env, Kind: r.kind, Trigger: "test", Commit: commit(r.commit), State: ledger.StatePending,
			Step: r.step, Note: r.note, Forced: r.forced}
		if r.forced {
			d.ForceReason = "hotfix"
		}
		if r.state == ledger.StateRefused {
			d.State = r.state // recorded final at once, as the preflight does
		}
		if err := st.Deployments().ForApp(r.app).Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		if r.finished == "" || d.State.Final() {
			continue
		}
		now = at(t, r.finished)
		d.State = r.state
		if err := st.Deployments().ForApp(r.app).Update(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
}

// commit makes a 40-hex commit of a short name ("c2" → "c2c2c2…").
func commit(name string) string { return strings.Repeat(name, 20) }

// firstCommits answers the first commit of a change from a table, by the
// short names of the previous and the new commit.
func firstCommits(t testing.TB, table map[[2]string]string) dora.FirstCommit {
	return func(prev, c string) (time.Time, bool) {
		s, ok := table[[2]string{prev[:2], c[:2]}]
		if !ok {
			return time.Time{}, false
		}
		return at(t, s), true
	}
}

// load reads app's window as the apps package does.
func load(t testing.TB, st *ledger.Store, app, final string, since time.Time) []ledger.Outcome {
	t.Helper()
	rows, err := st.Deployments().ForApp(app).Outcomes(context.Background(), final, since)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

const (
	release  = ledger.KindRelease
	rollback = ledger.KindRollback
	deploy   = ledger.KindDeploy
	scale    = ledger.KindScale

	succeeded  = ledger.StateSucceeded
	failed     = ledger.StateFailed
	rolledBack = ledger.StateRolledBack
	refused    = ledger.StateRefused
)

// history is a week of two apps, counted by hand below. web releases to
// prod (controlled); api's only environment, dev, is automatic, so its
// deploys are its releases.
var history = []row{
	// web, before the window (which starts 11-23 12:00).
	{"web", "prod", release, "c0", succeeded, "live", "", false, "11-20 10:00", "11-20 10:05"},    // R0: live when the window starts
	{"web", "prod", release, "c1", rolledBack, "health", "", false, "11-21 09:00", "11-21 09:03"}, // F0: a failure before the window
	{"web", "dev", deploy, "c2", succeeded, "verified", "", false, "11-24 07:50", "11-24 08:00"},  // another environment: not counted
	// R1, the first release of the window: it restores F0, which is not counted (F0 is not in the window).
	{"web", "prod", release, "c2", succeeded, "live", "", false, "11-24 09:00", "11-24 09:10"},
	{"web", "prod", scale, "c2", succeeded, "health", "", false, "11-24 12:00", "11-24 12:01"},     // not a release
	{"web", "prod", release, "c3", refused, "preflight", "", false, "11-25 08:00", ""},             // refused: not a release
	{"web", "prod", release, "c3", succeeded, "live", "", true, "11-25 10:00", "11-25 10:05"},      // R2, forced
	{"web", "prod", rollback, "c2", succeeded, "live", "", false, "11-25 11:00", "11-25 11:05"},    // rolls R2 back by command
	{"web", "prod", release, "c4", rolledBack, "health", "", false, "11-26 09:00", "11-26 09:06"},  // R3, rolled back by the controller
	{"web", "prod", release, "c5", failed, "tags", "", false, "11-26 13:00", "11-26 13:01"},        // R4, failed
	{"web", "prod", release, "c5", succeeded, "live", "", false, "11-27 09:00", "11-27 09:06"},     // R5: restores R3 and R4
	{"web", "prod", release, "c6", succeeded, "live", "", false, "11-28 10:00", "11-28 10:04"},     // R6
	{"web", "prod", release, "c7", succeeded, "live", "", false, "11-29 13:58", "11-29 14:00"},     // R7: its commits unknown
	{"web", "prod", release, "c8", rolledBack, "health", "", false, "11-30 10:00", "11-30 10:05"},  // R8: not restored by 12:00
	{"web", "prod", rollback, "c6", failed, "health", "", false, "11-30 10:20", "11-30 10:30"},     // a failed rollback: nothing
	{"web", "prod", release, "c9", succeeded, "live", "", false, "11-30 12:30", "11-30 12:35"},     // after the window
	{"web", "prod", release, "ca", ledger.StatePending, "preflight", "", false, "11-30 11:30", ""}, // in flight: nothing

	// api: dev only, automatic.
	{"api", "dev", deploy, "a1", succeeded, "verified", "", false, "11-24 14:50", "11-24 15:00"},                       // A1: its first ever
	{"api", "dev", deploy, "a2", failed, "build", "", false, "11-25 09:55", "11-25 10:00"},                             // tests failed: never deployed
	{"api", "dev", deploy, "a3", failed, "smoke", "", false, "11-26 11:50", "11-26 12:00"},                             // A3 failed
	{"api", "dev", deploy, "a4", succeeded, "verified", "", false, "11-26 17:50", "11-26 18:00"},                       // A4 restores A3
	{"api", "dev", deploy, "a5", failed, "deploy", "checked again after restart", false, "11-27 08:00", "11-27 08:01"}, // interrupted
}

// first commits of each change: (previous live commit, new commit) → the
// author time of the change's earliest commit.
var changes = map[[2]string]string{
	{"c0", "c2"}: "11-23 09:10", // R1: 24h before it went live
	{"c2", "c3"}: "11-25 08:05", // R2: 2h
	{"c2", "c5"}: "11-25 09:06", // R5 (after the rollback to c2): 48h
	{"c5", "c6"}: "11-28 09:04", // R6: 1h
	{"a1", "a4"}: "11-26 10:00", // A4: 8h
}

func TestComputeHandCounted(t *testing.T) {
	st, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	record(t, st, history)
	until := at(t, "11-30 12:00")
	since := until.Add(-7 * dora.Day)
	fc := firstCommits(t, changes)

	web := dora.Compute(load(t, st, "web", "prod", since), fc, since, until)
	web.App = "web"
	// Deployments (went live in the window): R1, R2, R5, R6, R7 = 5, of
	// which R2 forced; per day 5/7.
	// Releases: those 5 and the failed R3, R4, R8 = 8.
	// Change failures: R2 (rolled back by command), R3, R4, R8 = 4; 4/8.
	// Lead times: R1 24h, R2 2h, R5 48h, R6 1h (R7's commits are unknown):
	// sorted 1h 2h 24h 48h, median (2h+24h)/2 = 13h, p90 the 4th (⌈3.6⌉) 48h.
	// Restores: R2 10:05 → the rollback 11:05 = 1h; R3 11-26 09:06 → R5
	// 11-27 09:06 = 24h; R4 11-26 13:01 → R5 = 20h05m. Sorted 1h 20h05m
	// 24h: median 20h05m, p90 the 3rd (⌈2.7⌉) 24h. R8 is not restored.
	wantWeb := dora.Report{
		App: "web", Since: since, Until: until, Window: "7d",
		Deployments: 5, DeploymentsPerDay: 5.0 / 7, Forced: 1,
		LeadTimes: 4, LeadTimeMedian: 13 * time.Hour, LeadTimeP90: 48 * time.Hour,
		Releases: 8, ChangeFailures: 4, ChangeFailureRate: 0.5,
		Restores: 3, Unrestored: 1, TimeToRestoreMedian: 20*time.Hour + 5*time.Minute, TimeToRestoreP90: 24 * time.Hour,
		Daily: []dora.DayCount{
			{Date: "2026-11-23"},
			{Date: "2026-11-24", Deployments: 1, Releases: 1, LeadTimeMedian: 24 * time.Hour},                   // R1
			{Date: "2026-11-25", Deployments: 1, Releases: 1, ChangeFailures: 1, LeadTimeMedian: 2 * time.Hour}, // R2, rolled back
			{Date: "2026-11-26", Releases: 2, ChangeFailures: 2},                                                // R3, R4
			{Date: "2026-11-27", Deployments: 1, Releases: 1, LeadTimeMedian: 48 * time.Hour},                   // R5
			{Date: "2026-11-28", Deployments: 1, Releases: 1, LeadTimeMedian: time.Hour},                        // R6
			{Date: "2026-11-29", Deployments: 1, Releases: 1},                                                   // R7
			{Date: "2026-11-30", Releases: 1, ChangeFailures: 1},                                                // R8
		},
	}
	ignoreSamples := cmpopts.IgnoreFields(dora.Report{}, "LeadTimeSamples", "TimeToRestoreSamples")
	ignoreDaySamples := cmpopts.IgnoreFields(dora.DayCount{}, "LeadTimeSamples")
	if diff := cmp.Diff(wantWeb, web, ignoreSamples, ignoreDaySamples); diff != "" {
		t.Errorf("web (-want +got):\n%s", diff)
	}

	api := dora.Compute(load(t, st, "api", "dev", since), fc, since, until)
	api.App = "api"
	// Deployments: A1, A4 = 2. Releases: A1, A3, A4 = 3 (A2 never got past
	// its tests, A5 was interrupted and tried again). Change failures: A3;
	// 1/3. Lead times: A4 8h (A1 is the app's first: nothing to compare
	// with). Restores: A3 11-26 12:00 → A4 18:00 = 6h.
	wantAPI := dora.Report{
		App: "api", Since: since, Until: until, Window: "7d",
		Deployments: 2, DeploymentsPerDay: 2.0 / 7,
		LeadTimes: 1, LeadTimeMedian: 8 * time.Hour, LeadTimeP90: 8 * time.Hour,
		Releases: 3, ChangeFailures: 1, ChangeFailureRate: 1.0 / 3,
		Restores: 1, TimeToRestoreMedian: 6 * time.Hour, TimeToRestoreP90: 6 * time.Hour,
		Daily: []dora.DayCount{
			{Date: "2026-11-23"},
			{Date: "2026-11-24", Deployments: 1, Releases: 1},
			{Date: "2026-11-25"},
			{Date: "2026-11-26", Deployments: 1, Releases: 2, ChangeFailures: 1, LeadTimeMedian: 8 * time.Hour},
			{Date: "2026-11-27"}, {Date: "2026-11-28"}, {Date: "2026-11-29"}, {Date: "2026-11-30"},
		},
	}
	if diff := cmp.Diff(wantAPI, api, ignoreSamples, ignoreDaySamples); diff != "" {
		t.Errorf("api (-want +got):\n%s", diff)
	}

	all := dora.Combine([]dora.Report{web, api}, since, until)
	// Together: 7 deployments (1 forced), 11 releases, 5 failures (5/11).
	// Lead times 1h 2h 8h 24h 48h: median 8h, p90 the 5th (⌈4.5⌉) 48h.
	// Restores 1h 6h 20h05m 24h: median (6h+20h05m)/2 = 13h02m30s, p90 the
	// 4th (⌈3.6⌉) 24h; one not restored.
	wantAll := dora.Report{
		Since: since, Until: until, Window: "7d",
		Deployments: 7, DeploymentsPerDay: 1, Forced: 1,
		LeadTimes: 5, LeadTimeMedian: 8 * time.Hour, LeadTimeP90: 48 * time.Hour,
		Releases: 11, ChangeFailures: 5, ChangeFailureRate: 5.0 / 11,
		Restores: 4, Unrestored: 1, TimeToRestoreMedian: 13*time.Hour + 2*time.Minute + 30*time.Second, TimeToRestoreP90: 24 * time.Hour,
		Daily: []dora.DayCount{
			{Date: "2026-11-23"},
			{Date: "2026-11-24", Deployments: 2, Releases: 2, LeadTimeMedian: 24 * time.Hour},
			{Date: "2026-11-25", Deployments: 1, Releases: 1, ChangeFailures: 1, LeadTimeMedian: 2 * time.Hour},
			{Date: "2026-11-26", Deployments: 1, Releases: 4, ChangeFailures: 3, LeadTimeMedian: 8 * time.Hour},
			{Date: "2026-11-27", Deployments: 1, Releases: 1, LeadTimeMedian: 48 * time.Hour},
			{Date: "2026-11-28", Deployments: 1, Releases: 1, LeadTimeMedian: time.Hour},
			{Date: "2026-11-29", Deployments: 1, Releases: 1},
			{Date: "2026-11-30", Releases: 1, ChangeFailures: 1},
		},
	}
	if diff := cmp.Diff(wantAll, all, ignoreSamples, ignoreDaySamples, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("all apps (-want +got):\n%s", diff)
	}

	// A window that ends before R2 is rolled back (11-25 11:05) sees R2 as
	// a success: the figures are what was known at the window's end.
	until2 := at(t, "11-25 11:00")
	early := dora.Compute(load(t, st, "web", "prod", since), fc, since, until2)
	if early.Deployments != 2 || early.ChangeFailures != 0 || early.Releases != 2 || early.Restores != 0 {
		t.Errorf("web until 11-25 11:00: %d deployments, %d releases, %d failures, %d restores; want 2, 2, 0, 0",
			early.Deployments, early.Releases, early.ChangeFailures, early.Restores)
	}
}

func TestEmptyWindow(t *testing.T) {
	until := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := dora.Compute(nil, nil, until.Add(-30*dora.Day), until)
	if r.Deployments != 0 || r.ChangeFailureRate != 0 || r.LeadTimeMedian != 0 || len(r.Daily) != 31 {
		t.Errorf("empty report: %+v", r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"leadTimeMedianSeconds":null`, `"timeToRestoreP90Seconds":null`, `"window":"30d"`, `"deployments":0`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON of an empty report lacks %s:\n%s", want, b)
		}
	}
}

func TestReportJSON(t *testing.T) {
	until := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := dora.Report{App: "web", Since: until.Add(-dora.Day), Until: until, Window: "1d", Deployments: 3, DeploymentsPerDay: 3,
		LeadTimes: 2, LeadTimeMedian: 90 * time.Minute, LeadTimeP90: 2 * time.Hour, Releases: 4, ChangeFailures: 1, ChangeFailureRate: 0.25,
		Restores: 1, TimeToRestoreMedian: 30 * time.Second, TimeToRestoreP90: 30 * time.Second,
		Daily: []dora.DayCount{{Date: "2026-11-30", Deployments: 1, Releases: 1}, {Date: "2026-12-01", Deployments: 2, Releases: 3, ChangeFailures: 1, LeadTimeMedian: 90 * time.Minute}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"leadTimeMedianSeconds":5400`, `"leadTimeP90Seconds":7200`, `"timeToRestoreMedianSeconds":30`,
		`"changeFailureRate":0.25`, `{"date":"2026-11-30","deployments":1,"releases":1,"changeFailures":0,"leadTimeMedianSeconds":null}`,
		`"leadTimeMedianSeconds":5400}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back dora.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

func TestParseWindow(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "7d", want: 7 * dora.Day},
		{in: "30d", want: 30 * dora.Day},
		{in: "90d", want: 90 * dora.Day},
		{in: "36h", want: 36 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "0d", wantErr: `window "0d": give a number of days from 1 to 3660, such as 7d, 30d or 90d`},
		{in: "-3d", wantErr: `window "-3d": give a number of days from 1 to 3660`},
		{in: "4000d", wantErr: `window "4000d": give a number of days from 1 to 3660`},
		{in: "1.5d", wantErr: `window "1.5d": give a number of days`},
		{in: "month", wantErr: `window "month": give a number of days such as 7d, 30d or 90d, or a duration such as 36h`},
		{in: "", wantErr: `window "": give a number of days such as 7d`},
		{in: "10s", wantErr: `window "10s": give a window from 1m to 3660d`},
		{in: "-5h", wantErr: `window "-5h": give a window from 1m to 3660d`},
	} {
		got, err := dora.ParseWindow(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, dora.ErrBadWindow) {
				t.Errorf("ParseWindow(%q) = %v, %v; want an ErrBadWindow saying %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back := dora.FormatWindow(got); tt.in[len(tt.in)-1] == 'd' && back != tt.in {
			t.Errorf("FormatWindow(%v) = %q, want %q", got, back, tt.in)
		}
	}
}

func TestPercentiles(t *testing.T) {
	h := time.Hour
	for _, tt := range []struct {
		in          []time.Duration
		median, p90 time.Duration
	}{
		{nil, 0, 0},
		{[]time.Duration{5 * h}, 5 * h, 5 * h},
		{[]time.Duration{3 * h, 1 * h}, 2 * h, 3 * h},
		{[]time.Duration{9 * h, 1 * h, 5 * h}, 5 * h, 9 * h},
		// 10 values 1h…10h: median 5h30m; p90 the 9th.
		{[]time.Duration{10 * h, 9 * h, 8 * h, 7 * h, 6 * h, 5 * h, 4 * h, 3 * h, 2 * h, 1 * h}, 5*h + 30*time.Minute, 9 * h},
		// 11 values 1h…11h: median 6h; p90 the 10th (⌈9.9⌉).
		{[]time.Duration{1 * h, 2 * h, 3 * h, 4 * h, 5 * h, 6 * h, 7 * h, 8 * h, 9 * h, 10 * h, 11 * h}, 6 * h, 10 * h},
	} {
		if got := dora.Median(tt.in); got != tt.median {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.median)
		}
		if got := dora.P90(tt.in); got != tt.p90 {
			t.Errorf("P90(%v) = %v, want %v", tt.in, got, tt.p90)
		}
	}
}
