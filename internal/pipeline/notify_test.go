package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/notify"
)

// recorder is a Notifier that keeps the events; fail makes the next calls
// fail, as a ledger that cannot be written.
type recorder struct {
	mu     sync.Mutex
	events []notify.Event
	fail   int
}

func (r *recorder) Notify(ctx context.Context, e notify.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("database is locked")
	}
	r.events = append(r.events, e)
	return nil
}

// take returns the events recorded since the last take, as "kind env
// commit-name".
func (r *recorder) take(names map[string]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.App != "web" {
			out = append(out, "wrong app "+e.App)
		}
		out = append(out, e.Kind+" "+e.Env+" "+names[e.Commit])
	}
	r.events = nil
	return out
}

// TestFlowsNotify checks the event each flow records: deployed and
// verified, build.failed, auto_rollback (dev and prod), released, refused,
// rolled_back; and that a failed write is tried again.
func TestFlowsNotify(t *testing.T) {
	h := newHarness(t)
	rec := &recorder{fail: 2}
	h.notifier = rec
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	c4 := h.repo.commit("c4", c1)
	names := map[string]string{c1: "c1", c2: "c2", c3: "c3", c4: "c4"}
	h.builder.fail[c2] = true
	h.smoker.fail[c3] = true
	envs := append([]Env(nil), testEnvs...)
	h.start(envs...)
	h.c.cfg.App = "web"

	check := func(step string, want ...string) {
		t.Helper()
		if diff := cmp.Diff(want, rec.take(names)); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", step, diff)
		}
	}
	h.pushMaster(c1)
	check("c1 on dev", "deployed dev c1", "verified dev c1")
	h.pushMaster(c2)
	check("c2 on dev", "build.failed dev c2")
	h.pushMaster(c3)
	check("c3 on dev", "deployed dev c3", "auto_rollback dev c3")
	r1 := h.release(c1)
	check("release c1", "released prod c1")
	if _, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c3}); err == nil {
		t.Fatal("release of c3, which failed on dev: no error")
	}
	check("release c3", "refused prod c3")
	h.pushMaster(c4)
	rec.take(nil)
	h.release(c4)
	check("release c4", "released prod c4")
	h.deployer.failing[digestOf(c1)] = true
	d, err := h.c.Rollback(context.Background(), RollbackRequest{Target: r1.ReleaseName})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFinal(d.ID)
	check("rollback to c1, unhealthy", "auto_rollback prod c1")
	delete(h.deployer.failing, digestOf(c1))
	d, err = h.c.Rollback(context.Background(), RollbackRequest{Target: r1.ReleaseName})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFinal(d.ID)
	check("rollback to c1", "rolled_back prod c1")
}
