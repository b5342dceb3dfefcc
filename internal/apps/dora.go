package apps

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"slipway.dev/slipway/internal/dora"
	"slipway.dev/slipway/internal/ledger"
)

// maxFirstCommits bounds the first commits an app keeps.
const maxFirstCommits = 100_000

// maxGitPerReport bounds how many changes one report reads from git: the
// first report of a long history reads the rest over the next ones, and
// meanwhile counts them without a lead time.
const maxGitPerReport = 1000

// unknownFor is how long a change git could not answer for (its commits
// not fetched yet, say) is not asked about again.
const unknownFor = 10 * time.Minute

// firstCommits keeps the first commit time of each change an app released:
// the pair of commits fixes it, so it is read from git once.
type firstCommits struct {
	mu    sync.Mutex
	times map[[2]string]firstCommit
}

type firstCommit struct {
	t     time.Time
	known bool
	until time.Time // when unknown: ask again after
}

// get returns what is kept of key: its time, or that it is unknown for
// now (ok and !known).
func (c *firstCommits) get(key [2]string, now time.Time) (t time.Time, known, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.times[key]
	if ok && !f.known && now.After(f.until) {
		return time.Time{}, false, false
	}
	return f.t, f.known, ok
}

func (c *firstCommits) put(key [2]string, f firstCommit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.times == nil || len(c.times) >= maxFirstCommits {
		c.times = map[[2]string]firstCommit{}
	}
	c.times[key] = f
}

// DORA computes the app's delivery metrics over the last since, on its
// final environment (docs/dora.md). A change whose commits the mirror
// does not hold (not fetched yet, or gone from the repository) has no
// lead time, and git is asked about it again 10 minutes later; one report
// asks git about at most 1,000 changes. The report counts the deployments
// that have a lead time.
func (p *App) DORA(ctx context.Context, since time.Duration) (dora.Report, error) {
	if since <= 0 {
		return dora.Report{}, fmt.Errorf("delivery metrics of %s: the window must be positive, not %s", p.Name(), since)
	}
	envs := p.Environments()
	final := envs[len(envs)-1]
	until := p.store.Now().UTC()
	from := until.Add(-since)
	history, err := p.ended.read(ctx, p.deps, final, from, until)
	if err != nil {
		return dora.Report{}, fmt.Errorf("delivery metrics of %s: %w", p.Name(), err)
	}
	asked := 0
	first := func(prev, commit string) (time.Time, bool) {
		key := [2]string{prev, commit}
		now := time.Now()
		if t, known, ok := p.firstCommits.get(key, now); ok {
			return t, known
		}
		if ctx.Err() != nil || asked >= maxGitPerReport {
			return time.Time{}, false
		}
		asked++
		t, ok, err := p.Source.FirstAuthorTime(ctx, prev, commit)
		if err != nil && ctx.Err() != nil {
			return time.Time{}, false
		}
		if err != nil || !ok {
			p.firstCommits.put(key, firstCommit{until: now.Add(unknownFor)})
			return time.Time{}, false
		}
		p.firstCommits.put(key, firstCommit{t: t, known: true})
		return t, true
	}
	r := dora.Compute(history, first, from, until)
	r.App = p.Name()
	if err := ctx.Err(); err != nil {
		return dora.Report{}, fmt.Errorf("delivery metrics of %s: %w", p.Name(), err)
	}
	return r, nil
}

// How the ended deployments of the final environment are kept between
// reports: a deployment that ended does not change, so a report reads
// only what ended since the last one, again from an hour before (a ledger
// write retried late ends a deployment in the past), and everything again
// every ten minutes.
const (
	endedOverlap = time.Hour
	endedReread  = 10 * time.Minute
)

// endedDeployments keeps what the last report read of the final
// environment.
type endedDeployments struct {
	mu   sync.Mutex
	from time.Time        // the window the rows cover starts here
	rows []ledger.Outcome // as Deployments.Outcomes(from) returned them, brought up to date
	at   time.Time        // when they were read in full
}

// readAll reads the final environment's history for a window from from in
// full, and keeps it.
func (e *endedDeployments) readAll(ctx context.Context, deps *ledger.Deployments, final string, from, now time.Time) ([]ledger.Outcome, error) {
	rows, err := deps.Outcomes(ctx, final, from)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.rows, e.from, e.at = rows, from, now
	e.mu.Unlock()
	return rows, nil
}

// keepDORAWarm reads each app's history for the largest window /metrics
// reports (90 days) when the controller starts, with the first commits of
// its changes, and reads it in full again every warmEvery, before a report
// would: no report waits for a full read of a long ledger.
func (a *Apps) keepDORAWarm(ctx context.Context) {
	t := time.NewTicker(warmEvery)
	defer t.Stop()
	for {
		a.warmDORA(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// warmDORA reads every app's history for warmWindow in full, and the
// first commits of its changes.
func (a *Apps) warmDORA(ctx context.Context) {
	for _, p := range a.list {
		envs := p.Environments()
		now := p.store.Now().UTC()
		_, err := p.ended.readAll(ctx, p.deps, envs[len(envs)-1], now.Add(-warmWindow), now)
		if err == nil {
			_, err = p.DORA(ctx, warmWindow)
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("read the history for the delivery metrics", "app", p.Name(), "err", err)
		}
	}
}

const (
	warmWindow = 90 * dora.Day
	warmEvery  = endedReread - time.Minute
)

// read returns the final environment's history for a window from from,
// as Deployments.Outcomes does, from what it keeps and what ended since.
// The slice returned is not changed afterwards.
func (e *endedDeployments) read(ctx context.Context, deps *ledger.Deployments, final string, from, now time.Time) ([]ledger.Outcome, error) {
	e.mu.Lock()
	rows, kept, at := e.rows, e.from, e.at
	e.mu.Unlock()
	if rows == nil || from.Before(kept) || now.Sub(at) > endedReread || now.Before(at) {
		return e.readAll(ctx, deps, final, from, now)
	}
	cut := kept
	if n := len(rows); n > 0 && rows[n-1].Finished.Add(-endedOverlap).After(cut) {
		cut = rows[n-1].Finished.Add(-endedOverlap)
	}
	fresh, err := deps.EndedSince(ctx, final, cut)
	if err != nil {
		return nil, err
	}
	k := sort.Search(len(rows), func(i int) bool { return !rows[i].Finished.Before(cut) })
	merged := make([]ledger.Outcome, 0, k+len(fresh))
	merged = append(append(merged, rows[:k]...), fresh...)
	e.mu.Lock()
	if e.at.Equal(at) && e.from.Equal(kept) { // nobody read them in full meanwhile
		e.rows = merged
	}
	e.mu.Unlock()
	return merged, nil
}
