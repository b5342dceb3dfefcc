//go:build integration

package local

import (
	"errors"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// TestZeroDowntime sends a steady load to an environment through a rolling
// update, a scale-down, a scale-up and an aborted update: every request must
// get a 2xx answer.
func TestZeroDowntime(t *testing.T) {
	v1r, v2r, broken := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	ctx := t.Context()
	spec := func(img, commit, version string, replicas int, env map[string]string) deploy.Spec {
		s := baseSpec("zdt")
		s.Image, s.Commit, s.Version, s.Replicas, s.Env = img, commit, version, replicas, env
		// A good build gets time to start on a busy machine; the
		// never-ready one fails after a few seconds whatever the load.
		s.Strategy.ReadyTimeout = 30 * time.Second
		if env != nil {
			s.Strategy.ReadyTimeout = 3 * time.Second
		}
		return s
	}
	if err := b.Apply(ctx, spec(v1r.Image, v1r.Commit, v1r.Version, 3, nil)); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(ctx, "zdt")
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, st.URL+"/", 300)
	phase := func(name string, do func() error) {
		t.Helper()
		before, start := l.counts(), time.Now()
		err := do()
		time.Sleep(300 * time.Millisecond) // keep the load on what follows
		l.check(t, name, before, time.Since(start))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	phase("steady, 3 replicas of v1", func() error { time.Sleep(time.Second); return nil })
	phase("rolling update v1 -> v2", func() error {
		return b.Apply(ctx, spec(v2r.Image, v2r.Commit, v2r.Version, 3, nil))
	})
	phase("scale down 3 -> 2", func() error {
		return b.Apply(ctx, spec(v2r.Image, v2r.Commit, v2r.Version, 2, nil))
	})
	phase("scale up 2 -> 4", func() error {
		return b.Apply(ctx, spec(v2r.Image, v2r.Commit, v2r.Version, 4, nil))
	})
	phase("aborted update to a never-ready build", func() error {
		err := b.Apply(ctx, spec(broken.Image, broken.Commit, broken.Version, 4, broken.Env))
		var re *deploy.RolloutError
		if !errors.As(err, &re) {
			return errors.New("the never-ready build did not fail the rollout")
		}
		return nil
	})
	phase("rolling update v2 -> v1 (rollback)", func() error {
		return b.Apply(ctx, spec(v1r.Image, v1r.Commit, v1r.Version, 4, nil))
	})
	l.stop()
	l.check(t, "total", counts{}, time.Since(l.start))
	st, err = b.Status(ctx, "zdt")
	if err != nil || st.Commit != v1r.Commit || st.Replicas.Ready != 4 || !st.Healthy {
		t.Errorf("at the end: %+v, %v; want v1 with 4 ready replicas", st, err)
	}
}
