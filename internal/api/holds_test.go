package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

func (f *fakeApp) Lock(ctx context.Context, req pipeline.LockRequest) (ledger.Lock, error) {
	f.record(fmt.Sprintf("lock %s by %s: %s", req.Env, req.By, req.Reason))
	if req.Reason == "" {
		return ledger.Lock{}, fmt.Errorf("lock %s: say why: %w", req.Env, pipeline.ErrReasonRequired)
	}
	return ledger.Lock{Env: req.Env, Reason: req.Reason, By: req.By}, nil
}

func (f *fakeApp) Unlock(ctx context.Context, env, by string) (ledger.Lock, error) {
	f.record(fmt.Sprintf("unlock %s by %s", env, by))
	if env == "dev" {
		return ledger.Lock{}, fmt.Errorf("unlock dev: %w", pipeline.ErrNotLocked)
	}
	return ledger.Lock{Env: env, Reason: "incident", By: "alice (lock command)"}, nil
}

func (f *fakeApp) Unpin(ctx context.Context, env, by string) (ledger.Pin, error) {
	f.record(fmt.Sprintf("unpin %s by %s", env, by))
	return ledger.Pin{Env: env, Commit: commit}, nil
}

func (f *fakeApp) Locks(ctx context.Context, limit int) (held, history []ledger.Lock, err error) {
	f.record(fmt.Sprintf("locks %d", limit))
	lk := ledger.Lock{Env: "prod", Reason: "incident", By: "alice (lock command)"}
	return []ledger.Lock{lk}, []ledger.Lock{lk, {Env: "dev", Reason: "x", By: "bob", UnlockedBy: "carol"}}, nil
}

func TestLocksAndPins(t *testing.T) {
	app := newFakeApp("web")
	base := startServer(t, &fakeApps{apps: []*fakeApp{app, newFakeApp("api")}})
	ctx := context.Background()
	c := NewClient(base, "secret")

	lk, err := c.Lock(ctx, "web", LockRequest{Env: "prod", Reason: "black friday", By: "alice@laptop"})
	if err != nil || lk.By != "alice@laptop (lock command)" {
		t.Errorf("lock: %+v, %v", lk, err)
	}
	if _, err := c.Lock(ctx, "web", LockRequest{Env: "prod"}); code(err) != CodeInvalid {
		t.Errorf("lock without a reason: %v (code %q), want %s", err, code(err), CodeInvalid)
	}
	if _, err := c.Unlock(ctx, "web", "prod", "bob"); err != nil {
		t.Errorf("unlock: %v", err)
	}
	if _, err := c.Unlock(ctx, "web", "dev", ""); code(err) != CodeConflict {
		t.Errorf("unlock of an unlocked env: %v (code %q), want %s", err, code(err), CodeConflict)
	}
	if _, err := c.Unlock(ctx, "web", "qa", ""); code(err) != CodeNotFound {
		t.Errorf("unlock of an unknown env: %v (code %q), want %s", err, code(err), CodeNotFound)
	}
	if p, err := c.Unpin(ctx, "web", "dev", ""); err != nil || p.Commit != commit {
		t.Errorf("unpin: %+v, %v", p, err)
	}
	locks, err := c.Locks(ctx, "web", 5)
	if err != nil || len(locks.Held) != 1 || len(locks.History) != 2 || locks.History[1].UnlockedBy != "carol" {
		t.Errorf("locks: %+v, %v", locks, err)
	}
	want := []string{
		"lock prod by alice@laptop (lock command): black friday",
		"lock prod by lock command: ",
		"unlock prod by bob (unlock command)",
		"unlock dev by unlock command",
		"unpin dev by unpin command",
		"locks 5",
	}
	if diff := cmp.Diff(want, app.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}

	s := NewServer(&fakeApps{apps: []*fakeApp{app}}, "secret", nil)
	if w := serve(s, "POST", "/api/v1/apps/web/locks", "", `{"env":"prod","reason":"x"}`); w.Code != http.StatusUnauthorized {
		t.Errorf("lock without the token: %d, want 401", w.Code)
	}
	if w := serve(s, "DELETE", "/api/v1/locks/prod", "secret", ""); w.Code != http.StatusOK {
		t.Errorf("unlock through the route of the only app: %d %s", w.Code, w.Body)
	}
}
