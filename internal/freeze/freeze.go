// Package freeze is freeze windows: the times when an environment takes no
// automatic deployment and no release without a reason to break the
// freeze. A window recurs every week (days, from, to) or spans dates
// (start, end), in a time zone.
package freeze

import (
	"fmt"
	"strings"
	"time"
)

// Window is one freeze window. It is weekly when Days is not empty, dated
// otherwise.
type Window struct {
	// Name says what the window is for; status and refusals show it.
	Name string
	// Days, From and To make a weekly window: on each of Days from From
	// to To (minutes after midnight, To up to 24*60). A To at or before
	// From runs past midnight into the next day.
	Days     []time.Weekday
	From, To int
	// Start and End make a dated window: from Start up to End (excluded).
	Start, End time.Time
	// Loc is the time zone of Days, From and To (UTC when nil).
	Loc *time.Location
}

// Schedule is every window of one environment.
type Schedule []Window

// Active returns the window that holds at t, if any, and when the freeze
// ends (the end of every window that holds, or follows on, without a gap).
func (s Schedule) Active(t time.Time) (Window, time.Time, bool) {
	var first Window
	found := false
	until := t
	// Follow windows that overlap or follow each other (the weekend as
	// saturday and sunday), a bounded number of times.
	for range 64 {
		w, end, ok := s.activeOnce(until)
		if !ok {
			break
		}
		if !found {
			first, found = w, true
		}
		if !end.After(until) {
			break
		}
		until = end
	}
	return first, until, found
}

// activeOnce returns a window holding at t and the latest end among them.
func (s Schedule) activeOnce(t time.Time) (Window, time.Time, bool) {
	var out Window
	var until time.Time
	found := false
	for _, w := range s {
		if end, ok := w.Active(t); ok {
			if !found || end.After(until) {
				out, until = w, end
			}
			found = true
		}
	}
	return out, until, found
}

// Active reports whether w holds at t, and when it ends.
func (w Window) Active(t time.Time) (time.Time, bool) {
	if len(w.Days) == 0 {
		if !t.Before(w.Start) && t.Before(w.End) {
			return w.End, true
		}
		return time.Time{}, false
	}
	loc := w.Loc
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	minute := lt.Hour()*60 + lt.Minute()
	at := func(day, min int) time.Time { return time.Date(y, m, day, 0, min, 0, 0, loc) }
	wraps := w.To <= w.From
	if w.on(lt.Weekday()) && minute >= w.From && (wraps || minute < w.To) {
		if wraps {
			return at(d+1, w.To), true
		}
		return at(d, w.To), true
	}
	yesterday := (lt.Weekday() + 6) % 7
	if wraps && w.on(yesterday) && minute < w.To {
		return at(d, w.To), true
	}
	return time.Time{}, false
}

func (w Window) on(day time.Weekday) bool {
	for _, x := range w.Days {
		if x == day {
			return true
		}
	}
	return false
}

// Describe names the window for people: its name, else when it holds.
func (w Window) Describe() string {
	if w.Name != "" {
		return w.Name
	}
	return "freeze " + w.When()
}

// When says when the window holds, in its time zone.
func (w Window) When() string {
	loc := w.Loc
	if loc == nil {
		loc = time.UTC
	}
	if len(w.Days) == 0 {
		return fmt.Sprintf("%s to %s", w.Start.In(loc).Format("2006-01-02 15:04"), w.End.In(loc).Format("2006-01-02 15:04 MST"))
	}
	days := make([]string, len(w.Days))
	for i, d := range w.Days {
		days[i] = strings.ToLower(d.String()[:3])
	}
	return fmt.Sprintf("%s %s-%s %s", strings.Join(days, ","), clock(w.From), clock(w.To), loc)
}

func clock(min int) string { return fmt.Sprintf("%02d:%02d", min/60, min%60) }

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseDay reads a day of the week: mon … sun, or the full English name.
func ParseDay(s string) (time.Weekday, error) {
	if d, ok := dayNames[strings.ToLower(strings.TrimSpace(s))]; ok {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a day of the week: use mon, tue, wed, thu, fri, sat or sun", s)
}

// ParseClock reads a time of day HH:MM (00:00 to 24:00) as minutes after
// midnight.
func ParseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if s == "24:00" {
		return 24 * 60, nil
	}
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day: write HH:MM from 00:00 to 24:00, such as 16:00", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// ParseDate reads a date (2006-01-02) or a date and time (2006-01-02T15:04
// or 2006-01-02 15:04) in loc. A date alone is its midnight; end, when set,
// makes it the midnight after it, so that a date alone as a window's end
// includes that day.
func ParseDate(s string, loc *time.Location, end bool) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	t, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date: write YYYY-MM-DD or YYYY-MM-DDTHH:MM, such as 2026-12-24 or 2026-12-24T12:00", s)
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}
