package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// chainEnvs is dev (from master) → staging (from dev) → prod (released,
// verified on staging).
var chainEnvs = []Env{
	{Name: "dev", Branch: "master", Automatic: true, URL: "http://127.0.0.1:8081", Replicas: 1},
	{Name: "staging", From: "dev", Automatic: true, URL: "http://127.0.0.1:8082", Replicas: 2},
	{Name: "prod", Branch: "release", RequireVerifiedOn: "staging", URL: "http://127.0.0.1:8080", Replicas: 3},
}

func (h *harness) waitVerified(env, commit string) ledger.Deployment {
	h.t.Helper()
	var d ledger.Deployment
	h.waitFor(env+" to take "+shortHash(commit), func() bool {
		var err error
		d, err = h.store.LatestForCommit(context.Background(), env, ledger.KindDeploy, commit)
		return err == nil && d.State.Final() && !h.c.busy(env)
	})
	return d
}

// A commit verified on dev is taken by staging with the same image, and only
// a commit verified on staging may be released to prod.
func TestChainPromotesTheSameDigest(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.smoker.fail[c2] = true
	h.start(chainEnvs...)

	h.pushMaster(c1)
	st := h.waitVerified("staging", c1)
	if st.State != ledger.StateSucceeded || st.Digest != digestOf(c1) || st.Trigger != "verified on dev" {
		t.Fatalf("staging took c1: %s %s (%s), trigger %q", st.State, st.Digest, st.Reason, st.Trigger)
	}
	if len(h.builder.builds) != 1 {
		t.Errorf("builds = %v, want c1 built once", h.builder.builds)
	}
	for _, tag := range []string{"env-dev", "env-staging"} {
		if got := h.tagger.get(tag); got != digestOf(c1) {
			t.Errorf("tag %s on %s, want c1's digest", tag, got)
		}
	}
	if got := h.tagger.get(LiveTag); got != "" {
		t.Errorf("live tag set to %s before any release", got)
	}

	// c2 fails on dev: staging never sees it, prod refuses it.
	d := h.pushMaster(c2)
	if d.State != ledger.StateFailed {
		t.Fatalf("c2 on dev: %s", d.State)
	}
	h.c.Poll()
	if _, err := h.store.LatestForCommit(context.Background(), "staging", ledger.KindDeploy, c2); !errors.Is(err, ledger.ErrNoDeployment) {
		t.Errorf("staging took c2, which failed on dev: %v", err)
	}
	if _, err := h.c.Release(context.Background(), ReleaseRequest{Commit: c2}); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "staging") {
		t.Errorf("release of c2 = %v, want refused as not verified on staging", err)
	}

	// The default release is the newest commit verified on staging.
	rel := h.release("")
	if rel.State != ledger.StateSucceeded || rel.Commit != c1 || rel.Digest != digestOf(c1) || rel.ReleaseName == "" {
		t.Fatalf("release: %+v", rel)
	}
	checkTruth(t, h, c1, rel.ReleaseName)
	if got := h.tagger.get("env-prod"); got != digestOf(c1) {
		t.Errorf("env-prod on %s", got)
	}
	status, err := h.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var modes []string
	for _, e := range status.Environments {
		modes = append(modes, e.Name+":"+e.Mode+":"+e.From+":"+e.Tag)
	}
	if got := strings.Join(modes, " "); got != "dev:automatic::env-dev staging:automatic:dev:env-staging prod:controlled::env-prod" {
		t.Errorf("status environments: %s", got)
	}
}

// Only the final environment has release names and the live tag; a
// release to a controlled environment in the middle has neither.
func TestReleaseToAMiddleEnvironment(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	envs := []Env{
		{Name: "dev", Branch: "master", Automatic: true, Replicas: 1},
		{Name: "staging", Branch: "staging", RequireVerifiedOn: "dev", Replicas: 1},
		{Name: "prod", Branch: "release", RequireVerifiedOn: "staging", Replicas: 1},
	}
	h.start(envs...)
	h.pushMaster(c1)
	if _, err := h.c.Release(context.Background(), ReleaseRequest{Env: "dev"}); !errors.Is(err, ErrNoControlledEnv) {
		t.Errorf("release to the automatic dev: %v", err)
	}
	d, err := h.c.Release(context.Background(), ReleaseRequest{Env: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	d = h.waitFinal(d.ID)
	if d.State != ledger.StateSucceeded || d.ReleaseName != "" {
		t.Errorf("release to staging: %s, name %q", d.State, d.ReleaseName)
	}
	if h.tagger.get(LiveTag) != "" || h.repo.branch("staging") != c1 || h.tagger.get("env-staging") != digestOf(c1) {
		t.Errorf("after the staging release: live %q, staging branch %s, env-staging %q", h.tagger.get(LiveTag), h.repo.branch("staging"), h.tagger.get("env-staging"))
	}
	rel := h.release("")
	if rel.Env != "prod" || rel.ReleaseName == "" {
		t.Fatalf("final release: %+v", rel)
	}
	checkTruth(t, h, c1, rel.ReleaseName)
}

// A stopped environment keeps its image: automatic deployments wait for it,
// releases and scales are refused, and start brings back its replicas.
func TestStopAndStart(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	h.start()
	h.pushMaster(c1)
	ctx := context.Background()

	d, err := h.c.Stop(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	d = h.waitFinal(d.ID)
	if d.State != ledger.StateSucceeded || d.Kind != ledger.KindStop || h.deployer.running("dev").replicas != 0 {
		t.Fatalf("stop: %s %s, dev runs %+v", d.State, d.Kind, h.deployer.running("dev"))
	}
	st, _ := h.c.Status(ctx)
	if dev := st.Environments[0]; !dev.Stopped || dev.Healthy || *dev.Commit != c1 {
		t.Errorf("status of stopped dev: stopped %v healthy %v commit %v", dev.Stopped, dev.Healthy, *dev.Commit)
	}
	if _, err := h.c.Stop(ctx, "dev"); !errors.Is(err, ErrStopped) {
		t.Errorf("second stop: %v", err)
	}
	if _, err := h.c.Scale(ctx, "dev", 3); !errors.Is(err, ErrStopped) {
		t.Errorf("scale of a stopped environment: %v", err)
	}

	// A push waits while dev is stopped.
	h.repo.setBranch("master", c2)
	h.c.Poll()
	time.Sleep(50 * time.Millisecond)
	h.c.Poll()
	if _, err := h.store.LatestForCommit(ctx, "dev", ledger.KindDeploy, c2); !errors.Is(err, ledger.ErrNoDeployment) {
		t.Fatalf("c2 deployed to a stopped dev: %v", err)
	}

	d, err = h.c.Start(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	d = h.waitFinal(d.ID)
	if d.State != ledger.StateSucceeded || d.Replicas != 2 {
		t.Errorf("start: %s with %d replicas, want succeeded with 2", d.State, d.Replicas)
	}
	if got := h.waitVerified("dev", c2); got.State != ledger.StateSucceeded {
		t.Errorf("c2 after start: %s (%s)", got.State, got.Reason)
	}
	if _, err := h.c.Start(ctx, "dev"); !errors.Is(err, ErrNotStopped) {
		t.Errorf("start of a running environment: %v", err)
	}
}

// A step that fails transiently is tried again; one that fails for good
// fails the deployment at once.
func TestTransientStepIsRetried(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.builder.transient = map[string]int{c1: 2}
	h.start()
	d := h.pushMaster(c1)
	if d.State != ledger.StateSucceeded {
		t.Fatalf("c1: %s at %s: %s", d.State, d.Step, d.Reason)
	}
	if got := len(h.builder.builds); got != 3 {
		t.Errorf("%d build attempts, want 3 (two transient failures, then success)", got)
	}
}

// A ledger write that fails is retried until it succeeds: the deployment's
// row is never left behind what happened.
func TestLedgerWriteIsNotDropped(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	flaky := &flakyStore{Store: h.store, failUpdates: 3}
	h.storeOverride = flaky
	h.start()
	d := h.pushMaster(c1)
	if d.State != ledger.StateSucceeded || d.Step != "verified" {
		t.Fatalf("c1: %s at %s (%s)", d.State, d.Step, d.Reason)
	}
	if flaky.failed() != 3 {
		t.Errorf("%d updates failed, want 3", flaky.failed())
	}
}
