package ledger

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDeploymentSteps(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	st.SetClock(func() time.Time { return now })
	web, api := st.Deployments().ForApp("web"), st.Deployments().ForApp("api")
	d := &Deployment{Env: "prod", Kind: KindRelease, Trigger: "release command", Commit: strings.Repeat("1", 40), State: StatePending, Step: "tags"}
	if err := web.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	other := &Deployment{Env: "prod", Kind: KindRelease, Trigger: "release command", Commit: strings.Repeat("2", 40), State: StatePending}
	if err := api.Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	if steps, err := web.Steps(ctx, d.ID); err != nil || len(steps) != 0 {
		t.Fatalf("Steps of a deployment without steps = %v, %v; want none", steps, err)
	}
	tags, err := web.StartStep(ctx, d.ID, "tags")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	tags.State = StepSucceeded
	if err := web.FinishStep(ctx, &tags); err != nil {
		t.Fatal(err)
	}
	dep, err := web.StartStep(ctx, d.ID, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	dep.Message = "1 of 2 new replicas ready"
	if err := web.UpdateStep(ctx, &dep); err != nil {
		t.Fatal(err)
	}
	running := dep
	now = now.Add(3 * time.Second)
	dep.State, dep.Message = StepFailed, "replica prod-1 not ready within 60s"
	if err := web.FinishStep(ctx, &dep); err != nil {
		t.Fatal(err)
	}

	t0 := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	want := []Step{
		{ID: tags.ID, DeploymentID: d.ID, Name: "tags", State: StepSucceeded, Started: t0, Finished: t0.Add(2 * time.Second)},
		{ID: dep.ID, DeploymentID: d.ID, Name: "deploy", State: StepFailed, Started: t0.Add(2 * time.Second),
			Finished: t0.Add(6 * time.Second), Message: "replica prod-1 not ready within 60s"},
	}
	got, err := web.Steps(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Steps (-want +got):\n%s", diff)
	}
	if got, err := st.Deployments().Steps(ctx, d.ID); err != nil || len(got) != 2 {
		t.Errorf("Steps of every app's ledger = %v, %v; want the two steps", got, err)
	}
	if d := want[1].Duration(now); d != 4*time.Second {
		t.Errorf("Duration of a finished step = %s, want 4s", d)
	}
	if d := running.Duration(now); d != 4*time.Second {
		t.Errorf("Duration of a running step = %s, want 4s (until now)", d)
	}

	// Another app's value sees none of it and can change none of it.
	if got, err := api.Steps(ctx, d.ID); err != nil || len(got) != 0 {
		t.Errorf("another app's Steps = %v, %v; want none", got, err)
	}
	if _, err := api.StartStep(ctx, d.ID, "health"); !errors.Is(err, ErrNoDeployment) {
		t.Errorf("StartStep on another app's deployment: %v, want ErrNoDeployment", err)
	}
	dep.Message = "changed by another app"
	if err := api.UpdateStep(ctx, &dep); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateStep of another app's step: %v, want ErrNotFound", err)
	}

	// Bad input says what to give.
	if _, err := web.StartStep(ctx, 999, "deploy"); !errors.Is(err, ErrNoDeployment) {
		t.Errorf("StartStep of an unknown deployment: %v, want ErrNoDeployment", err)
	}
	if _, err := web.StartStep(ctx, d.ID, ""); err == nil || !strings.Contains(err.Error(), "no name") {
		t.Errorf("StartStep without a name: %v", err)
	}
	health, err := web.StartStep(ctx, d.ID, "health")
	if err != nil {
		t.Fatal(err)
	}
	if err := web.FinishStep(ctx, &health); err == nil || !strings.Contains(err.Error(), "give succeeded, failed or skipped") {
		t.Errorf("FinishStep of a running step: %v", err)
	}
}

// TestStepsSurviveReopen checks the table as a ledger file holds it.
func TestStepsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	st := openTest(t, path)
	l := st.Deployments()
	d := &Deployment{Env: "dev", Kind: KindDeploy, Trigger: "push to master", Commit: strings.Repeat("3", 40), State: StatePending, Step: "build"}
	if err := l.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	s, err := l.StartStep(ctx, d.ID, "build")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	got, err := openTest(t, path).Deployments().Steps(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Step{s}, got); diff != "" {
		t.Errorf("Steps after reopening (-want +got):\n%s", diff)
	}
}

func TestOnBuildChange(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	var got []string
	st.OnBuildChange(func(app string) { got = append(got, app) })
	b, err := st.CreateBuild(ctx, Build{App: "web", Commit: strings.Repeat("4", 40)})
	if err != nil {
		t.Fatal(err)
	}
	b.State = BuildTesting
	if err := st.UpdateBuild(ctx, &b); err != nil {
		t.Fatal(err)
	}
	missing := Build{ID: 999, App: "api", State: BuildFailed}
	if err := st.UpdateBuild(ctx, &missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateBuild of no row: %v, want ErrNotFound", err)
	}
	st.OnBuildChange(nil)
	b.State = BuildBuilding
	if err := st.UpdateBuild(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web", "web"}, got); diff != "" {
		t.Errorf("apps told of build writes (-want +got):\n%s", diff)
	}
}
