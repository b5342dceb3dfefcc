package ledger

import (
	"context"
	"fmt"
	"time"
)

// Outcome is a deployment that ended, as the delivery metrics
// (internal/dora) read it: only what they need, so that a window of
// 100,000 deployments reads fast.
type Outcome struct {
	ID     int64
	Kind   DeploymentKind
	State  DeploymentState
	Forced bool
	Commit string
	// Step and Note are those of a deployment that did not succeed (empty
	// for one that did): where and how it ended.
	Step     string
	Note     string
	Finished time.Time
}

// The kinds and states by the numbers outcomeColumns gives them, so that
// reading one is no text to copy.
var (
	outcomeKinds  = []DeploymentKind{"", KindRelease, KindDeploy, KindRollback, KindScale, KindStop, KindStart}
	outcomeStates = []DeploymentState{"", StateSucceeded, StateFailed, StateRolledBack, StateRefused, StatePending, StateRolling}
)

const outcomeColumns = `id,
	CASE kind WHEN 'release' THEN 1 WHEN 'deploy' THEN 2 WHEN 'rollback' THEN 3 WHEN 'scale' THEN 4 WHEN 'stop' THEN 5
		WHEN 'start' THEN 6 ELSE 0 END,
	CASE state WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 2 WHEN 'rolled-back' THEN 3 WHEN 'refused' THEN 4
		WHEN 'pending' THEN 5 WHEN 'rolling' THEN 6 ELSE 0 END,
	forced, commit_sha,
	CASE WHEN state = 'succeeded' THEN '' ELSE step END,
	CASE WHEN state = 'succeeded' THEN '' ELSE note END,
	finished_at`

func scanOutcome(s rowScanner) (Outcome, error) {
	var o Outcome
	var kind, state int64
	var finished string
	if err := s.Scan(&o.ID, &kind, &state, &o.Forced, &o.Commit, &o.Step, &o.Note, &finished); err != nil {
		return Outcome{}, err
	}
	if kind >= 0 && kind < int64(len(outcomeKinds)) {
		o.Kind = outcomeKinds[kind]
	}
	if state >= 0 && state < int64(len(outcomeStates)) {
		o.State = outcomeStates[state]
	}
	var err error
	o.Finished, err = parseTimeFast(finished)
	return o, err
}

// parseTimeFast reads a time in the ledger's format (timeFormat) without
// the generality of time.Parse; anything else goes to parseTime.
func parseTimeFast(s string) (time.Time, error) {
	if len(s) != len(timeFormat) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
		s[19] != '.' || s[29] != 'Z' {
		return parseTime(s)
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var f [7]int
	for i, r := range [7][2]int{{0, 4}, {5, 7}, {8, 10}, {11, 13}, {14, 16}, {17, 19}, {20, 29}} {
		n, ok := num(r[0], r[1])
		if !ok {
			return parseTime(s)
		}
		f[i] = n
	}
	if f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 59 {
		return parseTime(s)
	}
	return time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], f[6], time.UTC), nil
}

// Outcomes returns the history of env that the delivery metrics of the
// window starting at since need: the last deployment that put a version
// live (a release, automatic deploy or rollback that succeeded) before
// since, when there is one, then every deployment of env that ended at or
// after since, in the order they ended. Deployments in flight have not
// ended and are not among them.
func (l *Deployments) Outcomes(ctx context.Context, env string, since time.Time) ([]Outcome, error) {
	what := fmt.Sprintf("read the deployments of %s since %s", env, since.UTC().Format(time.RFC3339))
	where, args := l.where(`env = ? AND finished_at <> '' AND finished_at < ? AND state = 'succeeded'
		AND kind IN ('release','deploy','rollback')`, env, formatTime(since))
	before, err := queryAll(ctx, l.db, what, scanOutcome,
		`SELECT `+outcomeColumns+` FROM deployments `+where+` ORDER BY finished_at DESC, id DESC LIMIT 1`, args...)
	if err != nil {
		return nil, err
	}
	after, err := l.endedSince(ctx, what, env, since, len(before))
	if err != nil {
		return nil, err
	}
	copy(after, before)
	return after, nil
}

// EndedSince returns the deployments of env that ended at or after since,
// in the order they ended.
func (l *Deployments) EndedSince(ctx context.Context, env string, since time.Time) ([]Outcome, error) {
	return l.endedSince(ctx, fmt.Sprintf("read the deployments of %s since %s", env, since.UTC().Format(time.RFC3339)), env, since, 0)
}

// endedSince is EndedSince with room for skip outcomes before the ones
// it reads.
func (l *Deployments) endedSince(ctx context.Context, what, env string, since time.Time, skip int) ([]Outcome, error) {
	// Counted first (from the index alone), so that the list is made once
	// at its size rather than grown row by row.
	where, args := l.where(`env = ? AND finished_at <> '' AND finished_at >= ?`, env, formatTime(since))
	var n int
	if err := l.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deployments `+where, args...).Scan(&n); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := make([]Outcome, skip, skip+n+16) // room for a few that end meanwhile
	rows, err := l.db.QueryContext(ctx, `SELECT `+outcomeColumns+` FROM deployments `+where+` ORDER BY finished_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		o, err := scanOutcome(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
