// Package dora computes the four DORA delivery metrics of an app from its
// ledger: deployment frequency, lead time for changes, change failure rate
// and time to restore, over a window of time, with a series per day for
// charts. docs/dora.md defines each figure and its edge cases; this
// package is that definition in code.
package dora

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// The windows the metrics are usually read over (the dashboard's and
// /metrics').
var Windows = []time.Duration{7 * Day, 30 * Day, 90 * Day}

// Day is 24 hours: a window of "30d" is 30 of them.
const Day = 24 * time.Hour

// MaxWindow is the longest window ParseWindow accepts.
const MaxWindow = 3660 * Day

// ErrBadWindow is returned by ParseWindow for a window it cannot read.
var ErrBadWindow = errors.New("bad window")

// ParseWindow reads a window: a number of days ("7d", "30d", "90d") or a
// Go duration ("36h", "90m"), from a minute to MaxWindow.
func ParseWindow(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > int(MaxWindow/Day) {
			return 0, fmt.Errorf("window %q: give a number of days from 1 to %d, such as 7d, 30d or 90d: %w", s, MaxWindow/Day, ErrBadWindow)
		}
		d = time.Duration(days) * Day
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("window %q: give a number of days such as 7d, 30d or 90d, or a duration such as 36h: %w", s, ErrBadWindow)
		}
	}
	if d < time.Minute || d > MaxWindow {
		return 0, fmt.Errorf("window %q: give a window from 1m to %dd: %w", s, MaxWindow/Day, ErrBadWindow)
	}
	return d, nil
}

// FormatWindow writes a window the way ParseWindow reads it: "30d" for
// whole days, a Go duration ("36h0m0s") otherwise.
func FormatWindow(d time.Duration) string {
	if d > 0 && d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	return d.String()
}

// Report is an app's delivery metrics over a window (or every app's
// together, when App is ""). In JSON, durations are seconds (a number, or
// null when there is nothing to measure); docs/api.md lists the fields.
type Report struct {
	App    string    `json:"app"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Window string    `json:"window"`

	// Deployments are the releases to the final environment that went live
	// in the window; rollbacks are not among them.
	Deployments       int     `json:"deployments"`
	DeploymentsPerDay float64 `json:"deploymentsPerDay"`
	// Forced are the deployments that skipped the preflight.
	Forced int `json:"forced"`

	// LeadTimes is how many deployments have a lead time (the first
	// release of an app has none, nor one whose commits the repository
	// does not hold).
	LeadTimes      int           `json:"leadTimes"`
	LeadTimeMedian time.Duration `json:"-"`
	LeadTimeP90    time.Duration `json:"-"`

	// Releases are the releases to the final environment that ended in the
	// window: live, failed or rolled back (refused ones are not).
	Releases int `json:"releases"`
	// ChangeFailures are those of Releases that failed, were rolled back by
	// the controller, or went live and were later rolled back by command.
	ChangeFailures    int     `json:"changeFailures"`
	ChangeFailureRate float64 `json:"changeFailureRate"`

	// Restores are the change failures that a healthy release or rollback
	// ended; Unrestored the others.
	Restores            int           `json:"restores"`
	Unrestored          int           `json:"unrestored"`
	TimeToRestoreMedian time.Duration `json:"-"`
	TimeToRestoreP90    time.Duration `json:"-"`

	// Daily has one entry per UTC day the window touches, oldest first.
	Daily []DayCount `json:"daily"`

	// The samples behind the medians, so that Combine can pool reports
	// computed in this process; they are not in JSON.
	LeadTimeSamples      []time.Duration `json:"-"`
	TimeToRestoreSamples []time.Duration `json:"-"`
}

// DayCount is one day of a report's series.
type DayCount struct {
	// Date is the UTC day, as 2006-01-02.
	Date           string        `json:"date"`
	Deployments    int           `json:"deployments"`
	Releases       int           `json:"releases"`
	ChangeFailures int           `json:"changeFailures"`
	LeadTimeMedian time.Duration `json:"-"`
	// LeadTimeSamples are the day's lead times; not in JSON.
	LeadTimeSamples []time.Duration `json:"-"`
}

// seconds is a duration in JSON: seconds, or null when n (the number of
// samples) is 0.
func seconds(d time.Duration, n int) *float64 {
	if n == 0 {
		return nil
	}
	s := d.Seconds()
	return &s
}

func fromSeconds(s *float64) time.Duration {
	if s == nil {
		return 0
	}
	return time.Duration(math.Round(*s * float64(time.Second)))
}

type reportJSON struct {
	LeadTimeMedian      *float64 `json:"leadTimeMedianSeconds"`
	LeadTimeP90         *float64 `json:"leadTimeP90Seconds"`
	TimeToRestoreMedian *float64 `json:"timeToRestoreMedianSeconds"`
	TimeToRestoreP90    *float64 `json:"timeToRestoreP90Seconds"`
}

// MarshalJSON writes r with its durations in seconds.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	if r.Daily == nil {
		r.Daily = []DayCount{}
	}
	return json.Marshal(struct {
		plain
		reportJSON
	}{plain(r), reportJSON{
		LeadTimeMedian:      seconds(r.LeadTimeMedian, r.LeadTimes),
		LeadTimeP90:         seconds(r.LeadTimeP90, r.LeadTimes),
		TimeToRestoreMedian: seconds(r.TimeToRestoreMedian, r.Restores),
		TimeToRestoreP90:    seconds(r.TimeToRestoreP90, r.Restores),
	}})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Report) UnmarshalJSON(b []byte) error {
	type plain Report
	var v struct {
		plain
		reportJSON
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Report(v.plain)
	j := v.reportJSON
	r.LeadTimeMedian, r.LeadTimeP90 = fromSeconds(j.LeadTimeMedian), fromSeconds(j.LeadTimeP90)
	r.TimeToRestoreMedian, r.TimeToRestoreP90 = fromSeconds(j.TimeToRestoreMedian), fromSeconds(j.TimeToRestoreP90)
	return nil
}

type dayJSON struct {
	LeadTimeMedian *float64 `json:"leadTimeMedianSeconds"`
}

// MarshalJSON writes d with its lead time in seconds.
func (d DayCount) MarshalJSON() ([]byte, error) {
	type plain DayCount
	return json.Marshal(struct {
		plain
		dayJSON
	}{plain(d), dayJSON{seconds(d.LeadTimeMedian, d.leadTimes())}})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *DayCount) UnmarshalJSON(b []byte) error {
	type plain DayCount
	var v struct {
		plain
		dayJSON
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = DayCount(v.plain)
	d.LeadTimeMedian = fromSeconds(v.dayJSON.LeadTimeMedian)
	return nil
}

// leadTimes is how many lead times the day has; a day read from JSON has
// no samples, and a median when it had some.
func (d DayCount) leadTimes() int {
	if len(d.LeadTimeSamples) == 0 && d.LeadTimeMedian != 0 {
		return 1
	}
	return len(d.LeadTimeSamples)
}

// FirstCommit returns the time of the first commit of a change: the
// earliest author time among the commits reachable from commit and not
// from prev. ok is false when it cannot tell (no such commits, or the
// repository does not have them).
type FirstCommit func(prev, commit string) (t time.Time, ok bool)

// isChange reports whether d brings a new version: a release, or an
// automatic deploy (when the final environment is automatic).
func isChange(d *ledger.Outcome) bool {
	return d.Kind == ledger.KindRelease || d.Kind == ledger.KindDeploy
}

// interruptedNote is the note the controller leaves on an automatic deploy
// that a restart interrupted: the commit is tried again from the start, so
// the row is not an outcome.
const interruptedNote = "checked again after restart"

// neverDeployed reports whether a failed automatic deploy stopped before
// it reached the environment (its build or its tests failed), or was
// interrupted and tried again: such a row is not a release.
func neverDeployed(d *ledger.Outcome) bool {
	return d.Kind == ledger.KindDeploy && (d.Step == "build" || d.Step == "image" || strings.Contains(d.Note, interruptedNote))
}

// Compute computes the metrics over [since, until] of history, the
// deployments of an app's final environment that ended, as
// ledger.Deployments.Outcomes returns them: they may start before since
// (the release live when the window starts is what its first release is
// compared with) and go on after until (they are not counted).
// firstCommit may be nil (no lead times).
func Compute(history []ledger.Outcome, firstCommit FirstCommit, since, until time.Time) Report {
	since, until = since.UTC(), until.UTC()
	r := Report{Since: since, Until: until, Window: FormatWindow(until.Sub(since)), Daily: days(since, until)}
	rows := make([]*ledger.Outcome, 0, len(history))
	for i := range history {
		d := &history[i]
		if d.State.Final() && !d.Finished.IsZero() && !d.Finished.After(until) && d.State != ledger.StateRefused {
			rows = append(rows, d)
		}
	}
	// One rollout at a time per environment: ids are the order things
	// happened in.
	slices.SortFunc(rows, func(a, b *ledger.Outcome) int { return cmp.Compare(a.ID, b.ID) })

	inWindow := func(d *ledger.Outcome) bool { return !d.Finished.Before(since) }
	day := func(t time.Time) *DayCount { return &r.Daily[dayIndex(since, t)] }
	var (
		live        *ledger.Outcome // the release or rollback that runs
		liveCounted bool            // live is a release of the window, not yet a failure
		open        []time.Time     // when each change failure not yet restored began
	)
	restore := func(at time.Time) {
		for _, began := range open {
			r.TimeToRestoreSamples = append(r.TimeToRestoreSamples, at.Sub(began))
		}
		r.Restores += len(open)
		open = open[:0]
	}
	for _, d := range rows {
		switch {
		case isChange(d) && d.State == ledger.StateSucceeded:
			restore(d.Finished)
			if inWindow(d) {
				r.Deployments++
				r.Releases++
				dc := day(d.Finished)
				dc.Deployments++
				dc.Releases++
				if d.Forced {
					r.Forced++
				}
				if live != nil && firstCommit != nil {
					if first, ok := firstCommit(live.Commit, d.Commit); ok {
						lt := max(d.Finished.Sub(first), 0)
						r.LeadTimeSamples = append(r.LeadTimeSamples, lt)
						dc.LeadTimeSamples = append(dc.LeadTimeSamples, lt)
					}
				}
			}
			live, liveCounted = d, inWindow(d)
		case isChange(d) && !neverDeployed(d): // failed or rolled back by the controller
			if inWindow(d) {
				r.Releases++
				r.ChangeFailures++
				dc := day(d.Finished)
				dc.Releases++
				dc.ChangeFailures++
				open = append(open, d.Finished)
			}
		case d.Kind == ledger.KindRollback && d.State == ledger.StateSucceeded:
			if live != nil && isChange(live) && liveCounted {
				// The release it moved away from failed: from when it went
				// live until now.
				r.ChangeFailures++
				day(live.Finished).ChangeFailures++
				open = append(open, live.Finished)
			}
			restore(d.Finished)
			live, liveCounted = d, false
		}
	}
	r.Unrestored = len(open)
	r.finish()
	return r
}

// finish derives the rates and percentiles from the counts and samples.
func (r *Report) finish() {
	if days := r.Until.Sub(r.Since).Hours() / 24; days > 0 {
		r.DeploymentsPerDay = float64(r.Deployments) / days
	}
	if r.Releases > 0 {
		r.ChangeFailureRate = float64(r.ChangeFailures) / float64(r.Releases)
	}
	r.LeadTimes = len(r.LeadTimeSamples)
	lead := sorted(r.LeadTimeSamples)
	r.LeadTimeMedian, r.LeadTimeP90 = median(lead), p90(lead)
	restore := sorted(r.TimeToRestoreSamples)
	r.TimeToRestoreMedian, r.TimeToRestoreP90 = median(restore), p90(restore)
	for i := range r.Daily {
		r.Daily[i].LeadTimeMedian = Median(r.Daily[i].LeadTimeSamples)
	}
}

// Combine pools reports of several apps over the same window into one (App
// ""): counts add up, and the medians and percentiles are those of every
// app's samples together. It needs reports made by Compute in this
// process: a report read from JSON has no samples.
func Combine(reports []Report, since, until time.Time) Report {
	since, until = since.UTC(), until.UTC()
	all := Report{Since: since, Until: until, Window: FormatWindow(until.Sub(since)), Daily: days(since, until)}
	index := map[string]int{}
	for i, d := range all.Daily {
		index[d.Date] = i
	}
	for _, r := range reports {
		all.Deployments += r.Deployments
		all.Forced += r.Forced
		all.Releases += r.Releases
		all.ChangeFailures += r.ChangeFailures
		all.Restores += r.Restores
		all.Unrestored += r.Unrestored
		all.LeadTimeSamples = append(all.LeadTimeSamples, r.LeadTimeSamples...)
		all.TimeToRestoreSamples = append(all.TimeToRestoreSamples, r.TimeToRestoreSamples...)
		for _, d := range r.Daily {
			i, ok := index[d.Date]
			if !ok {
				continue // the reports' windows differ by a moment across midnight
			}
			all.Daily[i].Deployments += d.Deployments
			all.Daily[i].Releases += d.Releases
			all.Daily[i].ChangeFailures += d.ChangeFailures
			all.Daily[i].LeadTimeSamples = append(all.Daily[i].LeadTimeSamples, d.LeadTimeSamples...)
		}
	}
	all.finish()
	return all
}

// days returns one empty entry per UTC day from since's to until's.
func days(since, until time.Time) []DayCount {
	n := dayIndex(since, until) + 1
	if n < 1 {
		n = 1
	}
	out := make([]DayCount, n)
	start := midnight(since)
	for i := range out {
		out[i].Date = start.AddDate(0, 0, i).Format(time.DateOnly)
	}
	return out
}

// dayIndex is the number of UTC days from since's to t's.
func dayIndex(since, t time.Time) int {
	a, b := midnight(since), midnight(t)
	return int(b.Sub(a).Round(time.Hour) / Day)
}

func midnight(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Median returns the middle value of samples (the mean of the two middle
// ones for an even count); 0 when there are none.
func Median(samples []time.Duration) time.Duration { return median(sorted(samples)) }

// P90 returns the 90th percentile of samples by nearest rank: the smallest
// value that at least 90% of the samples do not exceed; 0 when there are
// none.
func P90(samples []time.Duration) time.Duration { return p90(sorted(samples)) }

// median is Median of sorted samples.
func median(s []time.Duration) time.Duration {
	n := len(s)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2
}

// p90 is P90 of sorted samples.
func p90(s []time.Duration) time.Duration {
	if len(s) == 0 {
		return 0
	}
	rank := (9*len(s) + 9) / 10 // ⌈0.9 n⌉
	return s[rank-1]
}

func sorted(samples []time.Duration) []time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s
}
