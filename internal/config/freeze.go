package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"slipway.dev/slipway/internal/freeze"
)

// Freeze is a set of freeze windows: while one holds, an environment takes
// no automatic deployment (it waits) and no release without --force and a
// reason. Rollbacks, scales, stops and starts go on.
type Freeze struct {
	// TimeZone is the IANA time zone of the windows' days, times and
	// dates, such as Europe/Berlin. Default: the app's freeze.timeZone for
	// an environment's windows, else UTC.
	TimeZone string `yaml:"timeZone,omitempty"`
	// Windows are the freeze windows.
	Windows []FreezeWindow `yaml:"windows,omitempty"`
}

// FreezeWindow is one freeze window: weekly (days, from, to) or dated
// (start, end), not both.
type FreezeWindow struct {
	// Name says what the window is for, such as "weekend"; status and
	// refusals show it.
	Name string `yaml:"name,omitempty"`
	// Days are the days of the week the window starts on: mon, tue, wed,
	// thu, fri, sat, sun.
	Days []string `yaml:"days,omitempty"`
	// From and To are times of day HH:MM (To may be 24:00). Default 00:00
	// and 24:00, the whole day. A To at or before From runs past midnight
	// into the next day.
	From string `yaml:"from,omitempty"`
	To   string `yaml:"to,omitempty"`
	// Start and End are a date (YYYY-MM-DD) or a date and time
	// (YYYY-MM-DDTHH:MM). A date alone as End includes that day.
	Start string `yaml:"start,omitempty"`
	End   string `yaml:"end,omitempty"`
	// Environments, in the app's freeze only, are the environments the
	// window holds. Default: every environment.
	Environments []string `yaml:"environments,omitempty"`
}

// freezes checks the app's freeze windows and each environment's.
func (v *validator) freezes(c *Config) {
	appLoc := v.timeZone("freeze.timeZone", c.Freeze.TimeZone, time.UTC)
	names := envNames(c.Environments)
	for i, w := range c.Freeze.Windows {
		p := fmt.Sprintf("freeze.windows[%d]", i)
		v.freezeWindow(p, w, appLoc)
		for j, env := range w.Environments {
			if !slices.Contains(names, env) {
				v.add(fmt.Sprintf("%s.environments[%d]", p, j), "%q is not an environment of this app: use one of %s", env, strings.Join(names, ", "))
			}
		}
	}
	for i, e := range c.Environments {
		p := fmt.Sprintf("environments[%d].freeze", i)
		loc := v.timeZone(p+".timeZone", e.Freeze.TimeZone, appLoc)
		for j, w := range e.Freeze.Windows {
			wp := fmt.Sprintf("%s.windows[%d]", p, j)
			v.freezeWindow(wp, w, loc)
			if len(w.Environments) > 0 {
				v.add(wp+".environments", "is only for the app's freeze windows: a window under an environment holds that environment; remove it, or move the window to the app's freeze")
			}
		}
	}
}

// timeZone loads name (def when empty), reporting a name it does not know.
func (v *validator) timeZone(field, name string, def *time.Location) *time.Location {
	if name == "" {
		return def
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		v.add(field, "%q is not a time zone this machine knows: use an IANA name such as Europe/Berlin, America/New_York or UTC (%v)", name, err)
		return def
	}
	return loc
}

// freezeWindow checks one window; its messages name field p.
func (v *validator) freezeWindow(p string, w FreezeWindow, loc *time.Location) {
	_, err := w.window(loc)
	var fe *freezeError
	if errors.As(err, &fe) {
		v.add(join(p, fe.field), "%s", fe.msg)
	}
}

type freezeError struct{ field, msg string }

func (e *freezeError) Error() string { return e.field + ": " + e.msg }

// window turns w into a freeze window in loc, or says which field is wrong.
func (w FreezeWindow) window(loc *time.Location) (freeze.Window, error) {
	weekly := len(w.Days) > 0 || w.From != "" || w.To != ""
	dated := w.Start != "" || w.End != ""
	fail := func(field, format string, args ...any) (freeze.Window, error) {
		return freeze.Window{}, &freezeError{field, fmt.Sprintf(format, args...)}
	}
	switch {
	case weekly && dated:
		return fail("", "sets both days/from/to and start/end: a window is weekly or dated; split it into two windows")
	case !weekly && !dated:
		return fail("", "is empty: give days (with from and to) for a weekly window, or start and end for a dated one")
	}
	out := freeze.Window{Name: w.Name, Loc: loc}
	if dated {
		if w.Start == "" || w.End == "" {
			return fail("", "a dated window needs both start and end, such as start: 2026-12-24 and end: 2027-01-01")
		}
		var err error
		if out.Start, err = freeze.ParseDate(w.Start, loc, false); err != nil {
			return fail("start", "%v", err)
		}
		if out.End, err = freeze.ParseDate(w.End, loc, !strings.ContainsAny(w.End, "T ")); err != nil {
			return fail("end", "%v", err)
		}
		if !out.End.After(out.Start) {
			return fail("end", "%s is not after start %s: the window would never hold", w.End, w.Start)
		}
		return out, nil
	}
	if len(w.Days) == 0 {
		return fail("days", "is empty: name the days the window holds, such as days: [sat, sun]")
	}
	for i, d := range w.Days {
		day, err := freeze.ParseDay(d)
		if err != nil {
			return fail(fmt.Sprintf("days[%d]", i), "%v", err)
		}
		out.Days = append(out.Days, day)
	}
	from, to := nonEmpty(w.From, "00:00"), nonEmpty(w.To, "24:00")
	var err error
	if out.From, err = freeze.ParseClock(from); err != nil || out.From == 24*60 {
		return fail("from", "%q is not a time of day: write HH:MM from 00:00 to 23:59, such as 16:00", from)
	}
	if out.To, err = freeze.ParseClock(to); err != nil {
		return fail("to", "%v", err)
	}
	return out, nil
}

// FreezeSchedule returns the freeze windows that hold environment env:
// the app's (those naming env, or naming none) and env's own. Validate
// has refused bad windows; one that is bad anyway is left out.
func (c *Config) FreezeSchedule(env string) freeze.Schedule {
	appLoc := loadOr(c.Freeze.TimeZone, time.UTC)
	var s freeze.Schedule
	for _, w := range c.Freeze.Windows {
		if len(w.Environments) > 0 && !slices.Contains(w.Environments, env) {
			continue
		}
		if fw, err := w.window(appLoc); err == nil {
			s = append(s, fw)
		}
	}
	for _, e := range c.Environments {
		if e.Name != env {
			continue
		}
		loc := loadOr(e.Freeze.TimeZone, appLoc)
		for _, w := range e.Freeze.Windows {
			if fw, err := w.window(loc); err == nil {
				s = append(s, fw)
			}
		}
	}
	return s
}

func loadOr(name string, def *time.Location) *time.Location {
	if name == "" {
		return def
	}
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return def
}
