package ledger

import (
	"context"
	"fmt"
	"time"
)

// Outcome is a deployment that ended, as the delivery metrics
// (internal/dora) read it: only the columns they need, so that a window of
// 100,000 deployments reads fast.
type Outcome struct {
	ID       int64
	Kind     DeploymentKind
	State    DeploymentState
	Step     string
	Commit   string
	Forced   bool
	Note     string
	Finished time.Time
}

const outcomeColumns = `id, kind, state, step, commit_sha, forced, note, finished_at`

func scanOutcome(s rowScanner) (Outcome, error) {
	var o Outcome
	var kind, state, finished string
	if err := s.Scan(&o.ID, &kind, &state, &o.Step, &o.Commit, &o.Forced, &o.Note, &finished); err != nil {
		return Outcome{}, err
	}
	o.Kind, o.State = DeploymentKind(kind), DeploymentState(state)
	var err error
	o.Finished, err = parseTime(finished)
	return o, err
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
	where, args = l.where(`env = ? AND finished_at <> '' AND finished_at >= ?`, env, formatTime(since))
	after, err := queryAll(ctx, l.db, what, scanOutcome,
		`SELECT `+outcomeColumns+` FROM deployments `+where+` ORDER BY finished_at, id`, args...)
	if err != nil {
		return nil, err
	}
	return append(before, after...), nil
}
