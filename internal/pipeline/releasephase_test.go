package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
)

// fakeReleaser runs release phases in the pipeline's unit tests: it
// records each run in the deployer's list of what it applied (so the
// order of release phases and rollouts shows), with what the environment
// served and what its tags said at that moment.
type fakeReleaser struct {
	h    *harness
	mu   sync.Mutex
	fail map[string]bool // digests whose release command fails
	seen []releaseSeen
	// gate, when set, holds each run until it is closed or the run's
	// context ends.
	gate chan struct{}
}

type releaseSeen struct {
	id               int64 // the deployment number the run was handed under
	env, commit      string
	serving, envTag  string // digests the environment ran and its tag pointed at
	releaseBranchWas string
}

func newFakeReleaser(h *harness) *fakeReleaser {
	r := &fakeReleaser{h: h, fail: map[string]bool{}}
	h.releaser = r
	return r
}

func (r *fakeReleaser) ReleasePhase(ctx context.Context, d ledger.Deployment, out io.Writer) error {
	f := r.h.deployer
	f.mu.Lock()
	f.applied = append(f.applied, "release "+d.Env+"="+shortHash(d.Commit))
	serving := f.envs[d.Env].digest
	f.mu.Unlock()
	r.mu.Lock()
	r.seen = append(r.seen, releaseSeen{id: d.ID, env: d.Env, commit: d.Commit, serving: serving,
		envTag: r.h.tagger.get(EnvTag(d.Env)), releaseBranchWas: r.h.repo.branch("release")})
	fail, gate := r.fail[d.Digest], r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fmt.Fprintf(out, "migrating %s for %s\n", d.Env, shortHash(d.Commit))
	if fail {
		fmt.Fprintln(out, "ERROR: column users.birthday already exists")
		return errors.New("exited with status 1")
	}
	fmt.Fprintln(out, "2 migrations applied")
	return nil
}

func (r *fakeReleaser) runs() []releaseSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func (h *harness) applied() []string {
	h.deployer.mu.Lock()
	defer h.deployer.mu.Unlock()
	return slices.Clone(h.deployer.applied)
}

// releaseEnvs are testEnvs with a release phase on both environments.
func releaseEnvs() []Env {
	envs := slices.Clone(testEnvs)
	for i := range envs {
		envs[i].ReleasePhase = true
	}
	return envs
}

// The release phase runs before anything moves: on dev before the
// rollout, on prod before the tags, the release branch and the rollout;
// its output is the step's message.
func TestReleasePhaseRunsBeforeTrafficMoves(t *testing.T) {
	h := newHarness(t)
	r := newFakeReleaser(h)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start(releaseEnvs()...)
	h.pushMaster(c1)
	h.release(c1)
	dev := h.pushMaster(c2)
	prod := h.release(c2)
	if prod.State != ledger.StateSucceeded {
		t.Fatalf("release of c2: %s (%s)", prod.State, prod.Reason)
	}
	want := []string{
		"release dev=" + shortHash(c1), "dev=" + shortHash(c1) + "×2",
		"release prod=" + shortHash(c1), "prod=" + shortHash(c1) + "×4",
		"release dev=" + shortHash(c2), "dev=" + shortHash(c2) + "×2",
		"release prod=" + shortHash(c2), "prod=" + shortHash(c2) + "×4",
	}
	if diff := cmp.Diff(want, h.applied()); diff != "" {
		t.Errorf("release phases and rollouts in order (-want +got):\n%s", diff)
	}
	last := r.runs()[3]
	if last.serving != digestOf(c1) || last.envTag != digestOf(c1) || last.releaseBranchWas != c1 {
		t.Errorf("when prod's release phase of c2 ran: it served %s, env-prod was %s, release was %s; want all on c1",
			last.serving, last.envTag, shortHash(last.releaseBranchWas))
	}
	var names []string
	for _, s := range h.steps(prod.ID) {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"preflight", "release", "tags", "deploy", "health"}, names); diff != "" {
		t.Errorf("steps of the release (-want +got):\n%s", diff)
	}
	for _, id := range []int64{dev.ID, prod.ID} {
		s := h.steps(id)
		i := slices.IndexFunc(s, func(s stepLine) bool { return s.Name == "release" })
		if i < 0 || s[i].State != ledger.StepSucceeded || !strings.Contains(s[i].Message, "2 migrations applied") {
			t.Errorf("deployment %d: release step %+v; want succeeded with the command's output", id, s)
		}
	}
}

// A release phase that fails rolls nothing out: no tag, no branch move,
// no replica; the step holds the command's output.
func TestReleasePhaseFailureRollsOutNothing(t *testing.T) {
	h := newHarness(t)
	r := newFakeReleaser(h)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start(releaseEnvs()...)
	h.pushMaster(c1)
	h.release(c1)
	h.pushMaster(c2)
	r.mu.Lock()
	r.fail[digestOf(c2)] = true
	r.mu.Unlock()
	before := len(h.applied())
	d := h.release(c2)
	if d.State != ledger.StateFailed || d.Step != "release" || !strings.Contains(d.Reason, "release phase failed, nothing was rolled out and prod keeps its running version: exited with status 1") {
		t.Errorf("release of c2: %s at %s (%s); want failed at release", d.State, d.Step, d.Reason)
	}
	if strings.Contains(d.Reason, "ERROR: column") {
		t.Errorf("the deployment's reason carries the output: %q", d.Reason)
	}
	if got := h.applied()[before:]; !slices.Equal(got, []string{"release prod=" + shortHash(c2)}) {
		t.Errorf("after the release phase failed: %v; want nothing rolled out", got)
	}
	if got := h.deployer.running("prod").digest; got != digestOf(c1) {
		t.Errorf("prod runs %s, want c1", got)
	}
	if h.tagger.get(LiveTag) != digestOf(c1) || h.tagger.get(EnvTag("prod")) != digestOf(c1) || h.repo.branch("release") != c1 {
		t.Errorf("tags or branch moved: live %s, env-prod %s, release %s", h.tagger.get(LiveTag), h.tagger.get(EnvTag("prod")), shortHash(h.repo.branch("release")))
	}
	if _, ok := h.repo.tags[d.ReleaseName]; ok {
		t.Errorf("git tag %s made for a release that rolled nothing out", d.ReleaseName)
	}
	steps := h.steps(d.ID)
	want := stepLine{"release", "failed", "exited with status 1; its output:\nmigrating prod for " + shortHash(c2) + "\nERROR: column users.birthday already exists\n"}
	if diff := cmp.Diff([]stepLine{{"preflight", "succeeded", ""}, want}, steps); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	cur, err := h.store.Current(context.Background(), "prod")
	if err != nil || cur.Commit != c1 {
		t.Errorf("prod's current deployment: %s, %v; want c1's", shortHash(cur.Commit), err)
	}
}

// Rollbacks and scale changes run no release phase.
func TestReleasePhaseNotOnRollbackOrScale(t *testing.T) {
	h := newHarness(t)
	r := newFakeReleaser(h)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start(releaseEnvs()...)
	h.pushMaster(c1)
	h.release(c1)
	h.pushMaster(c2)
	h.release(c2)
	n := len(r.runs())
	rb, err := h.c.Rollback(context.Background(), RollbackRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := h.waitFinal(rb.ID); d.State != ledger.StateSucceeded {
		t.Fatalf("rollback: %s (%s)", d.State, d.Reason)
	}
	sc, err := h.c.Scale(context.Background(), "prod", 6)
	if err != nil {
		t.Fatal(err)
	}
	h.waitFinal(sc.ID)
	if got := r.runs()[n:]; len(got) != 0 {
		t.Errorf("release phases run by a rollback and a scale change: %+v", got)
	}
	for _, s := range h.steps(rb.ID) {
		if s.Name == "release" {
			t.Errorf("the rollback has a release step: %+v", s)
		}
	}
}

// A release phase that succeeded is not run again when slipway restarts
// in the middle of the rollout that follows it: not for a release, which
// is taken up where it was, nor for an automatic deployment, which is
// made again for the same commit.
func TestReleasePhaseOnceAcrossRestart(t *testing.T) {
	h := newHarness(t)
	r := newFakeReleaser(h)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start(releaseEnvs()...)
	h.pushMaster(c1)

	h.deployer.gate = make(chan struct{}) // rollouts hang
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c1})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("prod's deploy step", func() bool {
		steps, _ := h.store.Steps(context.Background(), d.ID)
		return len(steps) == 4 && steps[3].Name == "deploy"
	})
	h.repo.setBranch("master", c2)
	var interrupted ledger.Deployment
	h.waitFor("dev's deploy step of c2", func() bool {
		var err error
		interrupted, err = h.store.LatestForCommit(context.Background(), "dev", ledger.KindDeploy, c2)
		return err == nil && interrupted.Step == "deploy"
	})
	h.stop()
	h.deployer.gate = nil
	h.start(releaseEnvs()...)
	if got := h.waitFinal(d.ID); got.State != ledger.StateSucceeded {
		t.Fatalf("release after restart: %s (%s)", got.State, got.Reason)
	}
	// The interrupted deployment of c2 ends as failed at the start; the
	// one made again for c2 is the one to wait for.
	var dev ledger.Deployment
	h.waitFor("dev's new deployment of c2 to end", func() bool {
		var err error
		dev, err = h.store.LatestForCommit(context.Background(), "dev", ledger.KindDeploy, c2)
		return err == nil && dev.ID > interrupted.ID && dev.State.Final()
	})
	if dev.State != ledger.StateSucceeded {
		t.Fatalf("dev's deployment of c2 after restart: %s (%s)", dev.State, dev.Reason)
	}
	var ran []string
	for _, s := range r.runs() {
		ran = append(ran, s.env+"="+shortHash(s.commit))
	}
	if diff := cmp.Diff([]string{"dev=" + shortHash(c1), "prod=" + shortHash(c1), "dev=" + shortHash(c2)}, ran); diff != "" {
		t.Errorf("release phases run (-want +got):\n%s", diff)
	}
	for _, id := range []int64{d.ID, dev.ID} {
		s := h.steps(id)
		i := slices.IndexFunc(s, func(s stepLine) bool {
			return s.Name == "release" && s.State == ledger.StepSucceeded && strings.HasPrefix(s.Message, "not run again")
		})
		if i < 0 {
			t.Errorf("deployment %d after the restart: no release step saying it was not run again: %+v", id, s)
		}
	}
}

// A release phase that a restart interrupted while it ran is handed to the
// runtime again under the number of the automatic deployment that started
// it, so that a runtime naming its runs after it (the Kubernetes runtime's
// Job) takes up that run instead of starting the command a second time.
func TestReleasePhaseInterruptedIsTakenUp(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	r := newFakeReleaser(h)
	c1 := h.repo.commit("c1")
	r.gate = make(chan struct{}) // release phases hang
	h.start(releaseEnvs()...)
	h.repo.setBranch("master", c1)
	h.waitFor("dev's release phase of c1", func() bool { return len(r.runs()) == 1 })
	interrupted, err := h.store.LatestForCommit(ctx, "dev", ledger.KindDeploy, c1)
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	r.mu.Lock()
	r.gate = nil
	r.mu.Unlock()
	h.start(releaseEnvs()...)
	var dev ledger.Deployment
	h.waitFor("dev's new deployment of c1 to end", func() bool {
		var err error
		dev, err = h.store.LatestForCommit(ctx, "dev", ledger.KindDeploy, c1)
		return err == nil && dev.ID > interrupted.ID && dev.State.Final()
	})
	if dev.State != ledger.StateSucceeded {
		t.Fatalf("dev's deployment of c1 after restart: %s (%s)", dev.State, dev.Reason)
	}
	var ran []string
	for _, s := range r.runs() {
		ran = append(ran, fmt.Sprintf("%s=%s #%d", s.env, shortHash(s.commit), s.id))
	}
	want := fmt.Sprintf("dev=%s #%d", shortHash(c1), interrupted.ID)
	if diff := cmp.Diff([]string{want, want}, ran); diff != "" {
		t.Errorf("release phases handed to the runtime (-want +got):\n%s", diff)
	}
}
