package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/dora"
)

// DORA answers a report made of fixed samples: web deployed 12 times in
// the window, api twice.
func (f fakeApp) DORA(ctx context.Context, since time.Duration) (dora.Report, error) {
	f.record("dora %s", dora.FormatWindow(since))
	until := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := dora.Report{Deployments: 2, Releases: 2}
	if f.name == "web" {
		r = dora.Report{Deployments: 12, Releases: 14, ChangeFailures: 2, Restores: 1, Unrestored: 1,
			LeadTimeSamples:      []time.Duration{3 * time.Hour, 26 * time.Hour, 50 * time.Minute},
			TimeToRestoreSamples: []time.Duration{45 * time.Minute}}
	}
	r = dora.Combine([]dora.Report{r}, until.Add(-since), until)
	r.App = f.name
	return r, nil
}

func TestRenderDORA(t *testing.T) {
	until := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	since := until.Add(-30 * dora.Day)
	web := dora.Combine([]dora.Report{{Deployments: 12, Releases: 14, ChangeFailures: 2, Restores: 1, Unrestored: 1,
		LeadTimeSamples:      []time.Duration{3 * time.Hour, 26 * time.Hour, 50 * time.Minute},
		TimeToRestoreSamples: []time.Duration{45 * time.Minute}}}, since, until)
	web.App = "web"
	api := dora.Combine([]dora.Report{{Deployments: 2, Releases: 2, LeadTimeSamples: []time.Duration{40 * time.Second}}}, since, until)
	api.App = "api"
	idle := dora.Combine(nil, since, until)
	idle.App = "blog"
	all := dora.Combine([]dora.Report{web, api, idle}, since, until)
	var buf bytes.Buffer
	if err := renderDORA(&buf, []dora.Report{web, api, idle}, &all); err != nil {
		t.Fatal(err)
	}
	golden(t, "dora.golden", buf.Bytes())
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		40 * time.Second:                "40s",
		12*time.Minute + 29*time.Second: "12m",
		3 * time.Hour:                   "3h",
		3*time.Hour + 20*time.Minute:    "3h 20m",
		26 * time.Hour:                  "1d 2h",
		72 * time.Hour:                  "3d",
		2*dora.Day + 4*time.Hour + 59e9: "2d 4h",
		500 * time.Millisecond:          "1s",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestDORACommand(t *testing.T) {
	t.Chdir(t.TempDir())
	server, log := startController(t, "web=https://github.com/example/web.git", "api=git@github.com:example/api.git")

	out, errOut, code := slipway(t, "dora", "--server", server)
	if code != 0 || !strings.Contains(out, "Last 30d (2026-11-01 08:00 to 2026-12-01 08:00 UTC)") ||
		!strings.Contains(out, "(all)  14") || !strings.Contains(out, "web: 1 change failure not restored yet") {
		t.Errorf("dora: exit %d: %s\n%s", code, errOut, out)
	}
	out, _, code = slipway(t, "dora", "--server", server, "--since", "7d", "-o", "json")
	var all api.DORAReports
	if err := json.Unmarshal([]byte(out), &all); code != 0 || err != nil || len(all.Apps) != 2 || all.All.Deployments != 14 ||
		all.All.Window != "7d" || all.All.LeadTimes != 3 || all.All.LeadTimeMedian != 3*time.Hour {
		t.Errorf("dora -o json: exit %d, %v\n%s", code, err, out)
	}
	out, _, code = slipway(t, "dora", "--server", server, "--app", "api", "--since", "90d", "-o", "json")
	var one dora.Report
	if err := json.Unmarshal([]byte(out), &one); code != 0 || err != nil || one.App != "api" || one.Window != "90d" || one.Deployments != 2 {
		t.Errorf("dora --app api -o json: exit %d, %v\n%s", code, err, out)
	}
	if !strings.Contains(out, `"leadTimeMedianSeconds": null`) {
		t.Errorf("api's lead time is not null in JSON:\n%s", out)
	}
	out, _, code = slipway(t, "dora", "--server", server, "--app", "web")
	if code != 0 || !strings.Contains(out, "web  12") || strings.Contains(out, "(all)") {
		t.Errorf("dora --app web: exit %d\n%s", code, out)
	}
	_, errOut, code = slipway(t, "dora", "--server", server, "--app", "nope")
	if code != 1 || !strings.Contains(errOut, `no app "nope" on this controller: its apps are web, api`) {
		t.Errorf("dora of an unknown app: exit %d: %s", code, errOut)
	}
	want := []string{"web: dora 30d", "api: dora 30d", "web: dora 7d", "api: dora 7d", "api: dora 90d", "web: dora 30d"}
	if got := strings.Join(*log, "\n"); !sameLines(got, want) {
		t.Errorf("what the controller was asked:\n%s\nwant (in any order within a request):\n%s", got, strings.Join(want, "\n"))
	}
}

// sameLines reports whether got holds the lines of want, in any order.
func sameLines(got string, want []string) bool {
	lines := strings.Split(got, "\n")
	if len(lines) != len(want) {
		return false
	}
	count := map[string]int{}
	for _, l := range lines {
		count[l]++
	}
	for _, w := range want {
		count[w]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
