package apps

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/changes"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// waitApp waits until sub has been told that app changed.
func waitApp(t *testing.T, sub *changes.Sub, app string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case <-sub.C():
			if slices.Contains(sub.Take(), app) {
				return
			}
		case <-timeout:
			t.Fatalf("the hub was not told that %s changed", app)
		}
	}
}

// The hub hears of build rows and of the controllers' deployment rows; an
// app's steps are read through it, and only its own.
func TestChangesAndSteps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// shop's dev deployment was in flight when the last controller
	// stopped: the new one marks it failed, a ledger write.
	inFlight := &ledger.Deployment{Env: "dev", Kind: ledger.KindDeploy, Trigger: "push to master", Commit: strings.Repeat("a", 40),
		State: ledger.StateRolling, Step: "deploy"}
	if err := store.Deployments().ForApp("shop").Create(ctx, inFlight); err != nil {
		t.Fatal(err)
	}
	step, err := store.Deployments().ForApp("shop").StartStep(ctx, inFlight.ID, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	other := &ledger.Deployment{Env: "dev", Kind: ledger.KindDeploy, Trigger: "test", Commit: strings.Repeat("b", 40), State: ledger.StateSucceeded}
	if err := store.Deployments().ForApp("blog").Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	set, err := config.ParseSet("slipway.yaml", strings.NewReader(twoApps))
	if err != nil {
		t.Fatal(err)
	}
	hub := changes.NewHub()
	all, err := Open(ctx, Options{Set: set, DataDir: dir, RegistryAddr: "127.0.0.1:1", Store: store, Changes: hub, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if all.Changes() != hub {
		t.Fatal("Changes is not the hub given in the options")
	}
	sub := hub.Subscribe()
	defer sub.Cancel()

	if _, err := store.CreateBuild(ctx, ledger.Build{App: "shop", Commit: strings.Repeat("c", 40)}); err != nil {
		t.Fatal(err)
	}
	waitApp(t, sub, "shop")

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- all.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitApp(t, sub, "shop")

	shop, _ := all.Get("shop")
	// A command waits until the controller took up what was in flight: a
	// scale of an environment that runs nothing is refused once it has.
	if _, err := shop.Scale(ctx, "prod", 1); !errors.Is(err, pipeline.ErrNotDeployed) {
		t.Fatalf("scale of prod, which runs nothing: %v, want ErrNotDeployed", err)
	}
	var steps []ledger.Step
	deadline := time.Now().Add(30 * time.Second)
	for {
		steps, err = shop.Steps(ctx, inFlight.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) == 1 && steps[0].State != ledger.StepRunning || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(steps) != 1 || steps[0].ID != step.ID || steps[0].State != ledger.StepFailed {
		t.Errorf("steps of the deployment interrupted by a restart = %+v; want its deploy step, failed", steps)
	}
	if _, err := shop.Steps(ctx, other.ID); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("shop's steps of blog's deployment: %v, want ErrNotFound", err)
	}
	bare := &ledger.Deployment{Env: "prod", Kind: ledger.KindScale, Trigger: "test", Commit: strings.Repeat("d", 40), State: ledger.StateSucceeded}
	if err := store.Deployments().ForApp("shop").Create(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if got, err := shop.Steps(ctx, bare.ID); err != nil || got == nil || len(got) != 0 {
		t.Errorf("steps of a deployment without steps = %#v, %v; want an empty list", got, err)
	}
}
