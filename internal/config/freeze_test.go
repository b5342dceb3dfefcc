package config

import (
	"strings"
	"testing"
	"time"
)

func TestFreezeErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	tests := []parseErrorCase{
		{"unknown time zone", head + "freeze:\n  timeZone: Europe/Atlantis\n  windows:\n    - days: [sat]\n",
			[]string{`f.yaml:5: freeze.timeZone: "Europe/Atlantis" is not a time zone this machine knows: use an IANA name such as Europe/Berlin, America/New_York or UTC (unknown time zone Europe/Atlantis)`}},
		{"weekly window problems", head + "freeze:\n  windows:\n    - days: [fri, frieday]\n    - days: [sat]\n      from: \"25:00\"\n    - days: [sun]\n      to: 9am\n    - from: \"16:00\"\n",
			[]string{
				`f.yaml:6: freeze.windows[0].days[1]: "frieday" is not a day of the week: use mon, tue, wed, thu, fri, sat or sun`,
				`f.yaml:8: freeze.windows[1].from: "25:00" is not a time of day: write HH:MM from 00:00 to 23:59, such as 16:00`,
				`f.yaml:10: freeze.windows[2].to: "9am" is not a time of day: write HH:MM from 00:00 to 24:00, such as 16:00`,
				`f.yaml:11: freeze.windows[3].days: is empty: name the days the window holds, such as days: [sat, sun]`,
			}},
		{"dated window problems", head + "freeze:\n  windows:\n    - start: 2026-12-24\n    - start: 24.12.2026\n      end: 2027-01-01\n    - start: 2027-01-02\n      end: 2027-01-01\n    - start: 2027-01-02\n      end: 2027-01-03\n      days: [mon]\n    - name: nothing\n",
			[]string{
				`f.yaml:6: freeze.windows[0]: a dated window needs both start and end, such as start: 2026-12-24 and end: 2027-01-01`,
				`f.yaml:7: freeze.windows[1].start: "24.12.2026" is not a date: write YYYY-MM-DD or YYYY-MM-DDTHH:MM, such as 2026-12-24 or 2026-12-24T12:00`,
				`f.yaml:10: freeze.windows[2].end: 2027-01-01 is not after start 2027-01-02: the window would never hold`,
				`f.yaml:11: freeze.windows[3]: sets both days/from/to and start/end: a window is weekly or dated; split it into two windows`,
				`f.yaml:14: freeze.windows[4]: is empty: give days (with from and to) for a weekly window, or start and end for a dated one`,
			}},
		{"environments of windows", head + "freeze:\n  windows:\n    - days: [sat]\n      environments: [prod, qa]\nenvironments:\n  - name: dev\n  - name: prod\n    freeze:\n      windows:\n        - days: [sun]\n          environments: [prod]\n",
			[]string{
				`f.yaml:7: freeze.windows[0].environments[1]: "qa" is not an environment of this app: use one of dev, prod`,
				`f.yaml:14: environments[1].freeze.windows[0].environments: is only for the app's freeze windows: a window under an environment holds that environment; remove it, or move the window to the app's freeze`,
			}},
	}
	checkParseErrors(t, tests)
}

func TestFreezeSchedule(t *testing.T) {
	const file = `app: demo
repo:
  url: ./app.git
freeze:
  timeZone: Europe/Berlin
  windows:
    - name: weekend
      days: [sat, sun]
    - name: prod release day
      days: [fri]
      from: "12:00"
      environments: [prod]
environments:
  - name: dev
  - name: prod
    freeze:
      timeZone: UTC
      windows:
        - name: year end
          start: 2026-12-24
          end: 2026-12-31
`
	c, err := Parse("f.yaml", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	names := func(env string, at time.Time) string {
		w, _, ok := c.FreezeSchedule(env).Active(at)
		if !ok {
			return ""
		}
		return w.Name
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database on this machine: %v", err)
	}
	fri := time.Date(2026, 11, 27, 13, 0, 0, 0, berlin)
	if got := names("dev", fri); got != "" {
		t.Errorf("dev on friday 13:00 held by %q, want open (the window names prod only)", got)
	}
	if got := names("prod", fri); got != "prod release day" {
		t.Errorf("prod on friday 13:00 held by %q, want the prod release day", got)
	}
	if got := names("dev", time.Date(2026, 11, 28, 0, 30, 0, 0, berlin)); got != "weekend" {
		t.Errorf("dev on saturday 00:30 Berlin held by %q, want weekend", got)
	}
	// The end date is included, in prod's own time zone.
	if got := names("prod", time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC)); got != "year end" {
		t.Errorf("prod on 2026-12-31 23:30 UTC held by %q, want year end", got)
	}
	if got := names("prod", time.Date(2027, 1, 1, 0, 30, 0, 0, time.UTC)); got != "" {
		t.Errorf("prod on 2027-01-01 00:30 UTC (a friday, before noon) held by %q, want open", got)
	}
}
