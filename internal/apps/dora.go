package apps

import (
	"context"
	"fmt"
	"sync"
	"time"

	"slipway.dev/slipway/internal/dora"
)

// maxFirstCommits bounds the first commits an app keeps.
const maxFirstCommits = 100_000

// firstCommits keeps the first commit time of each change an app released:
// the pair of commits fixes it, so it is read from git once.
type firstCommits struct {
	mu    sync.Mutex
	times map[[2]string]time.Time
}

func (c *firstCommits) get(key [2]string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.times[key]
	return t, ok
}

func (c *firstCommits) put(key [2]string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.times == nil || len(c.times) >= maxFirstCommits {
		c.times = map[[2]string]time.Time{}
	}
	c.times[key] = t
}

// DORA computes the app's delivery metrics over the last since, on its
// final environment (docs/dora.md). A change whose commits the mirror
// does not hold (not fetched yet, or gone from the repository) has no
// lead time; the report counts the deployments that have one.
func (p *App) DORA(ctx context.Context, since time.Duration) (dora.Report, error) {
	if since <= 0 {
		return dora.Report{}, fmt.Errorf("delivery metrics of %s: the window must be positive, not %s", p.Name(), since)
	}
	envs := p.Environments()
	final := envs[len(envs)-1]
	until := p.store.Now().UTC()
	from := until.Add(-since)
	history, err := p.deps.Outcomes(ctx, final, from)
	if err != nil {
		return dora.Report{}, fmt.Errorf("delivery metrics of %s: %w", p.Name(), err)
	}
	first := func(prev, commit string) (time.Time, bool) {
		key := [2]string{prev, commit}
		if t, ok := p.firstCommits.get(key); ok {
			return t, true
		}
		if ctx.Err() != nil {
			return time.Time{}, false
		}
		t, ok, err := p.Source.FirstAuthorTime(ctx, prev, commit)
		if err != nil || !ok {
			return time.Time{}, false
		}
		p.firstCommits.put(key, t)
		return t, true
	}
	r := dora.Compute(history, first, from, until)
	r.App = p.Name()
	if err := ctx.Err(); err != nil {
		return dora.Report{}, fmt.Errorf("delivery metrics of %s: %w", p.Name(), err)
	}
	return r, nil
}
