//go:build integration

package local

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// TestSlowReadiness rolls out, under load, builds whose replicas are slow
// to get ready: one that answers its readiness check only 5 s after start
// is waited for within the ready timeout and takes over; the same one with
// a ready timeout under 5 s fails the rollout saying so; one whose every
// readiness answer takes 5 s (past the 1 s a check may take) fails naming
// the check that did not answer. The version running keeps serving
// throughout: not one request fails.
func TestSlowReadiness(t *testing.T) {
	v1r, v2r, _ := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	ctx := t.Context()
	spec := func(r string, env map[string]string, readyTimeout time.Duration) deploy.Spec {
		s := baseSpec("slow")
		s.Image, s.Commit, s.Version, s.Replicas, s.Env = v1r.Image, v1r.Commit, v1r.Version, 2, env
		if r == "v2" {
			s.Image, s.Commit, s.Version = v2r.Image, v2r.Commit, v2r.Version
		}
		s.Strategy.ReadyTimeout = readyTimeout
		return s
	}
	if err := b.Apply(ctx, spec("v1", nil, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, st.URL+"/", 100)
	phase := func(name string, do func() error) time.Duration {
		t.Helper()
		before, start := l.counts(), time.Now()
		err := do()
		took := time.Since(start)
		time.Sleep(300 * time.Millisecond) // keep the load on what follows
		l.check(t, name, before, time.Since(start))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return took
	}
	rolloutFails := func(want ...string) func(err error) error {
		return func(err error) error {
			var re *deploy.RolloutError
			if !errors.As(err, &re) {
				return fmt.Errorf("the rollout did not fail: %v", err)
			}
			for _, w := range want {
				if !strings.Contains(re.Error(), w) {
					return errors.New("the rollout's error lacks " + w + ": " + re.Error())
				}
			}
			t.Logf("rollout error: %v", re)
			return nil
		}
	}
	serves := func(commit string) {
		t.Helper()
		st, err := b.Status(ctx, "slow")
		if err != nil || st.Commit != commit || st.Replicas.Ready != 2 {
			t.Errorf("status = %+v, %v; want %s with 2 ready replicas", st, err, commit[:7])
		}
	}

	took := phase("update to v2, ready 5 s after start, readyTimeout 60 s", func() error {
		return b.Apply(ctx, spec("v2", map[string]string{"FIXTURE_READY_AFTER": "5s"}, time.Minute))
	})
	if took < 5*time.Second {
		t.Errorf("the rollout took %s, less than the replicas' 5 s to get ready", took)
	}
	serves(v2r.Commit)

	phase("update to v1, ready 5 s after start, readyTimeout 2 s", func() error {
		err := b.Apply(ctx, spec("v1", map[string]string{"FIXTURE_READY_AFTER": "5s"}, 2*time.Second))
		// The replica may not even listen yet on a busy machine: the
		// reason is then that the connection was refused.
		return rolloutFails("not ready within 2s (readiness check: ")(err)
	})
	serves(v2r.Commit)

	phase("update to v1, each readiness answer takes 5 s, readyTimeout 10 s", func() error {
		err := b.Apply(ctx, spec("v1", map[string]string{"FIXTURE_READY_SLOW": "5s"}, 10*time.Second))
		return rolloutFails("not ready within 10s", "GET readyz did not answer within 1s, the time a check may take")(err)
	})
	serves(v2r.Commit)
	l.stop()
	l.check(t, "total", counts{}, time.Since(l.start))
}
