package ledger

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReleasePhases(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	st.SetClock(func() time.Time { return now })
	web, api := st.Deployments().ForApp("web"), st.Deployments().ForApp("api")
	d := &Deployment{Env: "prod", Kind: KindRelease, Trigger: "release command", Commit: strings.Repeat("1", 40), State: StatePending}
	if err := web.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	other := &Deployment{Env: "prod", Kind: KindRelease, Trigger: "release command", Commit: strings.Repeat("2", 40), State: StatePending}
	if err := api.Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	if _, err := web.LastReleasePhase(ctx, "prod", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LastReleasePhase before any: %v, want ErrNotFound", err)
	}
	if err := web.StartReleasePhase(ctx, other.ID, "sha256:bb"); !errors.Is(err, ErrNoDeployment) {
		t.Errorf("StartReleasePhase of another app's deployment: %v, want ErrNoDeployment", err)
	}
	if err := web.FinishReleasePhase(ctx, d.ID, StepSucceeded); !errors.Is(err, ErrNotFound) {
		t.Errorf("FinishReleasePhase of one never started: %v, want ErrNotFound", err)
	}
	if err := web.StartReleasePhase(ctx, d.ID, "sha256:aa"); err != nil {
		t.Fatal(err)
	}
	got, err := web.LastReleasePhase(ctx, "prod", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := ReleasePhase{DeploymentID: d.ID, Env: "prod", Digest: "sha256:aa", State: StepRunning, Started: now}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("running (-want +got):\n%s", diff)
	}
	// Started again (after a restart), then finished.
	now = now.Add(time.Minute)
	if err := web.StartReleasePhase(ctx, d.ID, "sha256:aa"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if err := web.FinishReleasePhase(ctx, d.ID, StepSucceeded); err != nil {
		t.Fatal(err)
	}
	if got, err = web.LastReleasePhase(ctx, "prod", 0); err != nil {
		t.Fatal(err)
	}
	want.State, want.Started, want.Finished = StepSucceeded, now.Add(-2*time.Second), now
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("succeeded (-want +got):\n%s", diff)
	}
	if err := web.FinishReleasePhase(ctx, d.ID, StepRunning); err == nil {
		t.Error("FinishReleasePhase with state running: no error")
	}
	for _, q := range []struct {
		env   string
		after int64
	}{{"prod", d.ID}, {"dev", 0}} {
		if _, err := web.LastReleasePhase(ctx, q.env, q.after); !errors.Is(err, ErrNotFound) {
			t.Errorf("LastReleasePhase(%s, %d): %v, want ErrNotFound", q.env, q.after, err)
		}
	}
	if _, err := api.LastReleasePhase(ctx, "prod", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("another app sees web's release phase: %v", err)
	}
}
