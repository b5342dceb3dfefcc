package ledger

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDeployments(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	st.SetClock(func() time.Time { return now })
	l := st.Deployments()
	c1, c2 := strings.Repeat("1", 40), strings.Repeat("2", 40)

	if _, err := l.Current(ctx, "prod"); !errors.Is(err, ErrNoDeployment) || !errors.Is(err, ErrNotFound) {
		t.Errorf("Current of an empty ledger: %v, want ErrNoDeployment (an ErrNotFound)", err)
	}
	r1 := &Deployment{Env: "prod", Kind: KindRelease, Trigger: "release command", Commit: c1, Digest: "sha256:1",
		ReleaseName: "RC20261127_0930", Replicas: 4, State: StatePending, Step: "tags", Forced: true, ForceReason: "hotfix"}
	if err := l.Create(ctx, r1); err != nil {
		t.Fatal(err)
	}
	if inflight, err := l.InFlight(ctx); err != nil || len(inflight) != 1 || inflight[0].ID != r1.ID {
		t.Errorf("InFlight = %+v, %v", inflight, err)
	}
	now = now.Add(time.Minute)
	r1.State, r1.Step = StateSucceeded, "live"
	if err := l.Update(ctx, r1); err != nil {
		t.Fatal(err)
	}
	got, err := l.Get(ctx, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*r1, got); diff != "" {
		t.Errorf("Get after Update (-want +got):\n%s", diff)
	}
	if !got.FinishedAt.Equal(now) || !got.CreatedAt.Equal(now.Add(-time.Minute)) {
		t.Errorf("times: created %s finished %s", got.CreatedAt, got.FinishedAt)
	}

	refused := &Deployment{Env: "prod", Kind: KindRelease, Trigger: "git push to release", Commit: c2, State: StateRefused, Reason: "not a fast-forward"}
	if err := l.Create(ctx, refused); err != nil {
		t.Fatal(err)
	}
	if lf, err := l.LastFailure(ctx, "prod", r1.ID); err != nil || lf.ID != refused.ID || lf.FinishedAt.IsZero() {
		t.Errorf("LastFailure = %+v, %v; want the refusal, finished", lf, err)
	}
	if cur, err := l.Current(ctx, "prod"); err != nil || cur.ID != r1.ID {
		t.Errorf("Current = %+v, %v; want the release", cur, err)
	}
	if r, err := l.ReleaseByName(ctx, "prod", "RC20261127_0930"); err != nil || r.Commit != c1 {
		t.Errorf("ReleaseByName = %+v, %v", r, err)
	}
	if r, err := l.ReleaseByCommit(ctx, "prod", c1); err != nil || r.ReleaseName != "RC20261127_0930" {
		t.Errorf("ReleaseByCommit = %+v, %v", r, err)
	}
	if names, err := l.ReleaseNames(ctx, "RC20261127_0930"); err != nil || len(names) != 1 {
		t.Errorf("ReleaseNames = %v, %v", names, err)
	}
	if names, err := l.ReleaseNames(ctx, "RC20261127_0931"); err != nil || len(names) != 0 {
		t.Errorf("ReleaseNames of another minute = %v, %v", names, err)
	}
	counts, err := l.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []DeploymentCount{{"", "prod", KindRelease, StateRefused, 1}, {"", "prod", KindRelease, StateSucceeded, 1}}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("Counts (-want +got):\n%s", diff)
	}
	if latest, err := l.Latest(ctx, "", 10); err != nil || len(latest) != 2 || latest[0].ID != refused.ID {
		t.Errorf("Latest = %+v, %v; want newest first", latest, err)
	}
}
