package pipeline

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
)

// stepLine is a step as these tests compare it: name, state and message.
type stepLine struct{ Name, State, Message string }

func (h *harness) steps(id int64) []stepLine {
	h.t.Helper()
	steps, err := h.store.Steps(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []stepLine
	for _, s := range steps {
		if s.Finished.Before(s.Started) || (s.State != ledger.StepRunning && s.Finished.IsZero()) {
			h.t.Errorf("step %s: started %s, finished %s", s.Name, s.Started, s.Finished)
		}
		out = append(out, stepLine{s.Name, s.State, s.Message})
	}
	return out
}

func TestAutomaticDeployRecordsEachStep(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.builder.fail[c2] = true
	h.start()
	d := h.pushMaster(c1)
	want := []stepLine{
		{"build", "succeeded", ""},
		{"deploy", "succeeded", "2 of 2 replicas of " + shortHash(c1) + " ready"},
		{"health", "succeeded", "2 of 2 replicas ready"},
		{"smoke", "succeeded", ""},
		{"tags", "succeeded", ""},
	}
	if diff := cmp.Diff(want, h.steps(d.ID)); diff != "" {
		t.Errorf("steps of c1 on dev (-want +got):\n%s", diff)
	}

	d = h.pushMaster(c2)
	want = []stepLine{{"build", "failed", "go test: FAIL"}}
	if diff := cmp.Diff(want, h.steps(d.ID)); diff != "" {
		t.Errorf("steps of a failed build (-want +got):\n%s", diff)
	}
}

func TestReleaseRecordsEachStep(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	side := h.repo.commit("side", c1)
	h.start()
	h.pushMaster(c1)
	r1 := h.release(c1)
	want := []stepLine{
		{"preflight", "succeeded", ""},
		{"tags", "succeeded", ""},
		{"deploy", "succeeded", "4 of 4 replicas of " + shortHash(c1) + " ready"},
		{"health", "succeeded", "4 of 4 replicas ready"},
	}
	if diff := cmp.Diff(want, h.steps(r1.ID)); diff != "" {
		t.Errorf("steps of a release (-want +got):\n%s", diff)
	}

	// A refused release records its preflight, failed, with the reason.
	if _, err := h.c.Release(context.Background(), ReleaseRequest{Commit: side}); err == nil {
		t.Fatal("release of a commit not in master was not refused")
	}
	refused, err := h.store.Latest(context.Background(), "prod", 1)
	if err != nil || len(refused) != 1 || refused[0].State != ledger.StateRefused {
		t.Fatalf("latest prod deployment = %+v, %v; want the refusal", refused, err)
	}
	got := h.steps(refused[0].ID)
	if len(got) != 1 || got[0].Name != "preflight" || got[0].State != "failed" || !strings.Contains(got[0].Message, "not contained in master") {
		t.Errorf("steps of a refused release = %+v; want the preflight, failed, saying why", got)
	}

	// A release that does not become healthy is undone, and says so.
	h.pushMaster(c2)
	h.deployer.failing[digestOf(c2)] = true
	d := h.release(c2)
	want = []stepLine{
		{"preflight", "succeeded", ""},
		{"tags", "succeeded", ""},
		{"deploy", "failed", "replica 1 not ready within 10s"},
		{"undo", "succeeded", "prod is back on " + r1.ReleaseName},
	}
	if diff := cmp.Diff(want, h.steps(d.ID)); diff != "" {
		t.Errorf("steps of a release rolled back (-want +got):\n%s", diff)
	}
}

func TestForcedReleaseRecordsSkippedPreflight(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c1, Force: true, Reason: "hotfix"})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFinal(d.ID)
	got := h.steps(d.ID)
	if len(got) == 0 || got[0].Name != "preflight" || got[0].State != "skipped" || !strings.Contains(got[0].Message, "overridden by --force") {
		t.Errorf("first step of a forced release = %+v; want the preflight, skipped, saying it was overridden", got)
	}
}

func TestScaleRecordsSteps(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	h.pushMaster(c1)
	// The deploy's row ends before its rollout lets go of dev.
	h.waitFor("dev to be free", func() bool { return !h.c.busy("dev") })
	d, err := h.c.Scale(context.Background(), "dev", 3)
	if err != nil {
		t.Fatal(err)
	}
	h.waitFinal(d.ID)
	want := []stepLine{
		{"deploy", "succeeded", "3 of 3 replicas of " + shortHash(c1) + " ready"},
		{"health", "succeeded", "3 of 3 replicas ready"},
	}
	if diff := cmp.Diff(want, h.steps(d.ID)); diff != "" {
		t.Errorf("steps of a scale (-want +got):\n%s", diff)
	}
}

// A step's record that fails to be written is tried again until it is:
// the step waits for it and is recorded once.
func TestStepRecordIsNotDropped(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	flaky := &flakyStore{Store: h.store, failStarts: 2}
	h.storeOverride = flaky
	h.start()
	d := h.pushMaster(c1)
	if d.State != ledger.StateSucceeded {
		t.Fatalf("c1: %s at %s (%s)", d.State, d.Step, d.Reason)
	}
	if flaky.failed() != 2 {
		t.Errorf("%d step records failed, want 2", flaky.failed())
	}
	var names []string
	for _, s := range h.steps(d.ID) {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"build", "deploy", "health", "smoke", "tags"}, names); diff != "" {
		t.Errorf("steps recorded (-want +got):\n%s", diff)
	}
}

// A step that a stop interrupted is closed as such, and the restart's
// steps follow it.
func TestRestartClosesInterruptedStep(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	h.pushMaster(c1)
	h.deployer.gate = make(chan struct{}) // the prod rollout hangs
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c1})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("the deploy step to start", func() bool {
		steps, _ := h.store.Steps(context.Background(), d.ID)
		return len(steps) == 3 && steps[2].Name == "deploy"
	})
	h.stop()
	// A step left running (a crash rather than a stop) is closed at the
	// next start.
	crashed, err := h.store.StartStep(context.Background(), d.ID, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	h.deployer.gate = nil
	h.start()
	h.waitFinal(d.ID)
	want := []stepLine{
		{"preflight", "succeeded", ""},
		{"tags", "succeeded", ""},
		{"deploy", "failed", interruptedStep},
		{"deploy", "failed", interruptedStep},
		{"tags", "succeeded", ""},
		{"deploy", "succeeded", "4 of 4 replicas of " + shortHash(c1) + " ready"},
		{"health", "succeeded", "4 of 4 replicas ready"},
	}
	if diff := cmp.Diff(want, h.steps(d.ID)); diff != "" {
		t.Errorf("steps across a restart (-want +got):\n%s", diff)
	}
	if steps, _ := h.store.Steps(context.Background(), d.ID); steps[3].ID != crashed.ID {
		t.Errorf("the fourth step is %d, want the one left running (%d)", steps[3].ID, crashed.ID)
	}
}

// OnChange hears of every ledger write: deployments and steps.
func TestOnChangeAfterEveryWrite(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	writes := &countingStore{Store: h.store}
	h.storeOverride = writes
	var calls atomic.Int64
	h.onChange = func() { calls.Add(1) }
	h.start()
	h.pushMaster(c1)
	h.waitFor("dev to be free", func() bool { return !h.c.busy("dev") })
	// A create, four saves of the step's name, five steps started, three
	// progress reports (two of deploy, one of health), five steps
	// finished, the final save.
	if n, w := calls.Load(), writes.n.Load(); n != w || n != 19 {
		t.Errorf("OnChange called %d times for %d writes, want 19 of each", n, w)
	}
	before := calls.Load()
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c1})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() == before {
		t.Error("OnChange not called when the release was recorded")
	}
	h.waitFinal(d.ID)
	if n, w := calls.Load(), writes.n.Load(); n != w {
		t.Errorf("OnChange called %d times for %d writes", n, w)
	}
}

// countingStore counts the writes that succeed.
type countingStore struct {
	Store
	n atomic.Int64
}

func (c *countingStore) count(err error) error {
	if err == nil {
		c.n.Add(1)
	}
	return err
}

func (c *countingStore) Create(ctx context.Context, d *ledger.Deployment) error {
	return c.count(c.Store.Create(ctx, d))
}

func (c *countingStore) Update(ctx context.Context, d *ledger.Deployment) error {
	return c.count(c.Store.Update(ctx, d))
}

func (c *countingStore) StartStep(ctx context.Context, id int64, name string) (ledger.Step, error) {
	s, err := c.Store.StartStep(ctx, id, name)
	return s, c.count(err)
}

func (c *countingStore) UpdateStep(ctx context.Context, s *ledger.Step) error {
	return c.count(c.Store.UpdateStep(ctx, s))
}

func (c *countingStore) FinishStep(ctx context.Context, s *ledger.Step) error {
	return c.count(c.Store.FinishStep(ctx, s))
}

// A step tried again after a transient error says so while it waits; the
// step ends once, succeeded.
func TestRetriedStepSaysWhy(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.builder.transient = map[string]int{c1: 1}
	var mu sync.Mutex
	var messages []string
	h.onChange = func() {
		// Every write is followed by a look at the build step, as a
		// client following the deployment would.
		d, err := h.store.LatestForCommit(context.Background(), "dev", ledger.KindDeploy, c1)
		if err != nil {
			return
		}
		steps, _ := h.store.Steps(context.Background(), d.ID)
		if len(steps) > 0 && steps[0].Message != "" {
			mu.Lock()
			messages = append(messages, steps[0].Message)
			mu.Unlock()
		}
	}
	h.start()
	d := h.pushMaster(c1)
	steps := h.steps(d.ID)
	if steps[0].Name != "build" || steps[0].State != "succeeded" {
		t.Errorf("first step = %+v, want build, succeeded", steps[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(messages) == 0 || !strings.HasPrefix(messages[0], "build failed (attempt 1), trying again in 10ms: push: registry answered 503") {
		t.Errorf("the build step's messages = %q; want it to say the first attempt failed and why", messages)
	}
}
