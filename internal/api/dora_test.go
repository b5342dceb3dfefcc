package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/dora"
)

// doraUntil is when the fake apps' reports end.
var doraUntil = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

// DORA answers a fixed report: web has three deployments (lead times 1h,
// 2h, 4h), four releases, one failure restored in 30m; other apps have
// nothing.
func (f *fakeApp) DORA(ctx context.Context, since time.Duration) (dora.Report, error) {
	f.record("dora " + dora.FormatWindow(since))
	var r dora.Report
	if f.name == "web" {
		r = dora.Report{Deployments: 3, Releases: 4, ChangeFailures: 1, Restores: 1,
			LeadTimeSamples:      []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour},
			TimeToRestoreSamples: []time.Duration{30 * time.Minute}}
	}
	r = dora.Combine([]dora.Report{r}, doraUntil.Add(-since), doraUntil) // the figures from the samples
	r.App = f.name
	return r, nil
}

func TestDORARoutes(t *testing.T) {
	web, api := newFakeApp("web"), newFakeApp("api", "dev", "staging", "prod")
	s := NewServer(&fakeApps{apps: []*fakeApp{web, api}}, "secret", nil)

	w := serve(s, "GET", "/api/v1/apps/web/dora?since=7d", "", "")
	var rep dora.Report
	if err := json.Unmarshal(w.Body.Bytes(), &rep); w.Code != 200 || err != nil {
		t.Fatalf("GET web's dora: %d %v\n%s", w.Code, err, w.Body)
	}
	if rep.App != "web" || rep.Window != "7d" || rep.Deployments != 3 || rep.LeadTimeMedian != 2*time.Hour ||
		rep.ChangeFailureRate != 0.25 || rep.TimeToRestoreMedian != 30*time.Minute || len(rep.Daily) != 8 {
		t.Errorf("web's report: %+v", rep)
	}
	for _, want := range []string{`"leadTimeMedianSeconds": 7200`, `"changeFailureRate": 0.25`, `"timeToRestoreP90Seconds": 1800`, `"daily": [`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("web's report lacks %s:\n%s", want, w.Body)
		}
	}

	// Every app, and all together: the default window is 30 days.
	w = serve(s, "GET", "/api/v1/dora", "", "")
	var all DORAReports
	if err := json.Unmarshal(w.Body.Bytes(), &all); w.Code != 200 || err != nil {
		t.Fatalf("GET dora: %d %v\n%s", w.Code, err, w.Body)
	}
	if len(all.Apps) != 2 || all.Apps[0].App != "web" || all.Apps[1].App != "api" || all.Apps[1].Deployments != 0 ||
		all.All.App != "" || all.All.Window != "30d" || all.All.Deployments != 3 || all.All.Releases != 4 || all.All.LeadTimeP90 != 4*time.Hour {
		t.Errorf("every app's reports: %+v", all)
	}
	if !strings.Contains(w.Body.String(), `"leadTimeMedianSeconds": null`) {
		t.Errorf("api's report has a lead time, or not as null:\n%s", w.Body)
	}

	for _, tt := range []struct {
		path, code, msg string
	}{
		{"/api/v1/apps/web/dora?since=month", CodeInvalid, `since "month": give a number of days such as 7d, 30d or 90d, or a duration such as 36h (at least 1m, at most 3660d)`},
		{"/api/v1/dora?since=0d", CodeInvalid, `since "0d": give a number of days`},
		{"/api/v1/dora?since=-1h", CodeInvalid, `since "-1h"`},
		{"/api/v1/apps/nope/dora", CodeNotFound, `no app "nope" on this controller: its apps are web, api`},
	} {
		w := serve(s, "GET", tt.path, "", "")
		var e Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("GET %s: %d %s, want %s saying %q", tt.path, w.Code, w.Body, tt.code, tt.msg)
		}
	}
}

func TestDORAClient(t *testing.T) {
	ctx := context.Background()
	c := NewClient(startServer(t, &fakeApps{apps: []*fakeApp{newFakeApp("web")}}), "")
	rep, err := c.DORA(ctx, "web", "90d")
	if err != nil || rep.App != "web" || rep.Window != "90d" || rep.LeadTimeP90 != 4*time.Hour || rep.TimeToRestoreP90 != 30*time.Minute {
		t.Errorf("DORA(web, 90d) = %+v, %v", rep, err)
	}
	all, err := c.DORAAll(ctx, "")
	if err != nil || len(all.Apps) != 1 || all.All.Window != "30d" || all.All.Deployments != 3 {
		t.Errorf("DORAAll = %+v, %v", all, err)
	}
	if _, err := c.DORAAll(ctx, "soon"); code(err) != CodeInvalid {
		t.Errorf("DORAAll(soon): %v, want %s", err, CodeInvalid)
	}
}

func TestDORAMetrics(t *testing.T) {
	s := NewServer(&fakeApps{apps: []*fakeApp{newFakeApp("web"), newFakeApp("api", "dev")}}, "secret", nil)
	s.EnableMetrics(nil)
	body := serve(s, "GET", "/metrics", "", "").Body.String()
	for _, want := range []string{
		`slipway_dora_deployments{app="web",window="7d"} 3`,
		`slipway_dora_deployments{app="web",window="90d"} 3`,
		`slipway_dora_deployments_per_day{app="web",window="30d"} 0.1`,
		`slipway_dora_lead_time_median_seconds{app="web",window="30d"} 7200`,
		`slipway_dora_lead_time_p90_seconds{app="web",window="30d"} 14400`,
		`slipway_dora_change_failure_rate{app="web",window="7d"} 0.25`,
		`slipway_dora_time_to_restore_median_seconds{app="web",window="90d"} 1800`,
		`slipway_dora_deployments{app="api",window="30d"} 0`,
		`slipway_dora_releases{app="api",window="30d"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	// Nothing to measure: no series rather than a made-up 0.
	for _, absent := range []string{`slipway_dora_lead_time_median_seconds{app="api"`, `slipway_dora_change_failure_rate{app="api"`} {
		if strings.Contains(body, absent) {
			t.Errorf("metrics have %s though api has nothing to measure", absent)
		}
	}
}
