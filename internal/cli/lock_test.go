package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

func (f fakeApp) Lock(ctx context.Context, req pipeline.LockRequest) (ledger.Lock, error) {
	f.record("lock %s %q", req.Env, req.Reason)
	if f.name == "api" && req.Env == "prod" {
		return ledger.Lock{}, fmt.Errorf("lock prod: it is locked already by bob: %w", pipeline.ErrLocked)
	}
	return ledger.Lock{Env: req.Env, Reason: req.Reason, By: req.By}, nil
}

func (f fakeApp) Unlock(ctx context.Context, env, by string) (ledger.Lock, error) {
	f.record("unlock %s", env)
	return ledger.Lock{Env: env}, nil
}

func (f fakeApp) Unpin(ctx context.Context, env, by string) (ledger.Pin, error) {
	f.record("unpin %s", env)
	return ledger.Pin{Env: env}, nil
}

func (f fakeApp) Locks(ctx context.Context, limit int) (held, history []ledger.Lock, err error) {
	f.record("locks %d", limit)
	at := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	lk := ledger.Lock{Env: "prod", Reason: "black friday", By: "alice@laptop (lock command)", Since: at}
	return []ledger.Lock{lk}, []ledger.Lock{lk, {Env: "dev", Reason: "migration", By: "bob", Since: at.Add(-time.Hour),
		UnlockedBy: "carol (unlock command)", Until: at.Add(-time.Minute)}}, nil
}

func TestLockCommands(t *testing.T) {
	t.Chdir(t.TempDir())
	server, log := startController(t, "web=https://github.com/example/web.git", "api=git@github.com:example/api.git")

	_, errOut, code := slipway(t, "lock", "staging", "--all", "--reason", "load test", "--server", server)
	if code != 0 || !strings.Contains(errOut, "staging of web locked: load test (slipway unlock staging lifts it)") ||
		!strings.Contains(errOut, "staging of api locked") {
		t.Errorf("lock --all: exit %d: %s", code, errOut)
	}
	out, errOut, code := slipway(t, "lock", "prod", "--all", "--reason", "release day", "--server", server, "-o", "json")
	var results []holdResult
	if err := json.Unmarshal([]byte(out), &results); err != nil || code != 1 || len(results) != 2 || results[0].Error != "" ||
		!strings.Contains(results[1].Error, "locked already by bob") || !strings.Contains(errOut, "api: lock prod: it is locked already by bob") {
		t.Errorf("lock --all with one app locked already: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	for _, args := range [][]string{
		{"unlock", "prod", "--app", "web"},
		{"unpin", "dev", "-a", "api"},
	} {
		if _, errOut, code := slipway(t, append(args, "--server", server)...); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
	out, errOut, code = slipway(t, "locks", "--app", "web", "--limit", "5", "--server", server)
	wantOut := "prod is locked by alice@laptop (lock command) since 2026-11-27 09:30 UTC: black friday\n\n" +
		"ENVIRONMENT  LOCKED            BY                           UNLOCKED          BY                      REASON\n" +
		"prod         2026-11-27 09:30  alice@laptop (lock command)  -                 -                       black friday\n" +
		"dev          2026-11-27 08:30  bob                          2026-11-27 09:29  carol (unlock command)  migration\n"
	if code != 0 || out != wantOut {
		t.Errorf("locks: exit %d: %s\n%s\nwant:\n%s", code, errOut, out, wantOut)
	}
	want := []string{
		`web: lock staging "load test"`, `api: lock staging "load test"`,
		`web: lock prod "release day"`, `api: lock prod "release day"`,
		`web: unlock prod`, `api: unpin dev`, `web: locks 5`,
	}
	if diff := cmp.Diff(want, *log); diff != "" {
		t.Errorf("what the controller was asked (-want +got):\n%s", diff)
	}
	_, errOut, code = slipway(t, "lock", "prod", "--reason", "x", "--server", server)
	if code != 2 || !strings.Contains(errOut, "name one with --app, e.g. slipway lock --app web prod") {
		t.Errorf("lock without --app among several: exit %d: %s", code, errOut)
	}
}

func TestRenderStatusHeld(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	c1, c2, c3 := strings.Repeat("1a2b3c4d", 5), strings.Repeat("9f8e7d6c", 5), strings.Repeat("5e5e5e5e", 5)
	st := pipeline.Status{
		Environments: []pipeline.EnvStatus{
			{Name: "dev", Branch: "master", Commit: &c1, Replicas: pipeline.Replicas{Ready: 1, Desired: 1}, Healthy: true, URL: "http://127.0.0.1:8081",
				Pinned: &ledger.Pin{Env: "dev", Commit: c1, From: c2, Head: c2, By: "rollback command", Since: now.Add(-time.Hour)}},
			{Name: "staging", From: "dev", Commit: &c1, Replicas: pipeline.Replicas{Ready: 1, Desired: 1}, Healthy: true, URL: "http://127.0.0.1:8082",
				Frozen:  &pipeline.Frozen{Window: "weekend", Until: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
				Waiting: &pipeline.Waiting{Commit: c3, ShortCommit: c3[:7], Reason: "staging is frozen (weekend) until 2026-11-30 00:00 UTC"}},
			{Name: "prod", Branch: "release", Commit: &c1, Replicas: pipeline.Replicas{Ready: 2, Desired: 2}, Healthy: true, URL: "http://127.0.0.1:8080",
				Locked: &ledger.Lock{Env: "prod", Reason: "black friday", By: "alice@laptop (lock command)", Since: now.Add(-2 * time.Hour)}},
		},
	}
	var buf bytes.Buffer
	if err := renderStatus(&buf, st, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-held.golden", buf.Bytes())
}

func TestValidateFreeze(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/slipway.yaml"
	good := "app: shop\nrepo: {url: /nonexistent.git}\nfreeze:\n  timeZone: Europe/Berlin\n  windows:\n    - name: weekend\n      days: [fri, sat, sun]\n      from: \"16:00\"\n      to: \"09:00\"\n      environments: [prod]\n"
	if err := os.WriteFile(file, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := slipway(t, "validate", "--config", file)
	if code != 0 || !strings.Contains(out, "  prod     tracks release (controlled), 4 replicas on :8080\n           frozen: weekend (fri,sat,sun 16:00-09:00 Europe/Berlin)\n") ||
		strings.Count(out, "frozen:") != 1 {
		t.Errorf("validate: exit %d: %s\n%s", code, errOut, out)
	}
	bad := strings.Replace(good, "16:00", "4pm", 1)
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = slipway(t, "validate", "--config", file)
	if code != 2 || !strings.Contains(errOut, `slipway.yaml:8: freeze.windows[0].from: "4pm" is not a time of day: write HH:MM from 00:00 to 23:59, such as 16:00`) {
		t.Errorf("validate of a bad window: exit %d: %s", code, errOut)
	}
}
