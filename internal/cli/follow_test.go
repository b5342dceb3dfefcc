package cli

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/ledger"
)

// frame is one look at a deployment: the row and its steps.
type frame struct {
	state ledger.DeploymentState
	step  string
	steps []ledger.Step
}

// scriptedApp answers each look at its deployment with the next frame of
// a script, as a controller rolling it out would.
type scriptedApp struct {
	fakeApp
	kind   ledger.DeploymentKind
	reason string
	mu     sync.Mutex
	frames []frame
	next   int
	cur    frame
}

func (s *scriptedApp) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next < len(s.frames) {
		s.cur = s.frames[s.next]
		s.next++
	}
	d := ledger.Deployment{ID: id, Env: "prod", Kind: s.kind, Commit: strings.Repeat("1a2b3c4d", 5), ReleaseName: "RC2",
		Replicas: 2, Digest: "sha256:" + strings.Repeat("ab", 32), State: s.cur.state, Step: s.cur.step}
	if d.State.Final() && d.State != ledger.StateSucceeded {
		d.Reason = s.reason
	}
	return d, nil
}

func (s *scriptedApp) Steps(ctx context.Context, id int64) ([]ledger.Step, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.steps, nil
}

// oneApp is a controller of one app.
type oneApp struct{ app api.App }

func (o oneApp) List() []api.App                 { return []api.App{o.app} }
func (o oneApp) Get(name string) (api.App, bool) { return o.app, name == o.app.Name() }
func (o oneApp) Leftovers(ctx context.Context) ([]api.Leftover, error) {
	return nil, nil
}
func (o oneApp) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	return api.RemoveReport{}, nil
}

func serveApp(t *testing.T, a api.App) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := api.NewServer(oneApp{a}, "tok", nil)
	go s.Serve(l)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	t.Setenv(envToken, "tok")
	return "http://" + l.Addr().String()
}

var t0 = time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)

// st is a step that started at t0+from and, unless it runs, took took.
func st(id int64, name, state string, from, took time.Duration, msg string) ledger.Step {
	s := ledger.Step{ID: id, DeploymentID: 1, Name: name, State: state, Started: t0.Add(from), Message: msg}
	if state != ledger.StepRunning {
		s.Finished = s.Started.Add(took)
	}
	return s
}

func TestReleaseShowsSteps(t *testing.T) {
	const (
		ms = time.Millisecond
		s  = time.Second
	)
	preflight := st(1, "preflight", "succeeded", 0, 5*ms, "")
	tagsDone := st(2, "tags", "succeeded", 5*ms, 120*ms, "")
	deploy := func(state, msg string, took time.Duration) ledger.Step {
		return st(3, "deploy", state, 125*ms, took, msg)
	}
	frames := []frame{
		{ledger.StatePending, "preflight", []ledger.Step{preflight}},
		{ledger.StateRolling, "tags", []ledger.Step{preflight, st(2, "tags", "running", 5*ms, 0, "")}},
		{ledger.StateRolling, "deploy", []ledger.Step{preflight, tagsDone,
			deploy("running", "0 of 2 replicas of RC2 ready, 1 starting; 2 old serving", 0)}},
		{ledger.StateRolling, "deploy", []ledger.Step{preflight, tagsDone,
			deploy("running", "1 of 2 replicas of RC2 ready, 1 starting; 1 old serving, 1 old draining", 0)}},
	}
	t.Run("succeeded", func(t *testing.T) {
		app := &scriptedApp{fakeApp: fakeApp{name: "web", envs: []string{"dev", "prod"}, log: &[]string{}, mu: &sync.Mutex{}}, kind: ledger.KindRelease}
		deployed := deploy("succeeded", "2 of 2 replicas of RC2 ready", 3200*ms)
		app.frames = append(frames,
			frame{ledger.StateRolling, "health", []ledger.Step{preflight, tagsDone, deployed, st(4, "health", "running", 3325*ms, 0, "")}},
			frame{ledger.StateSucceeded, "live", []ledger.Step{preflight, tagsDone, deployed, st(4, "health", "succeeded", 3325*ms, 50*ms, "")}},
		)
		server := serveApp(t, app)
		out, errOut, code := slipway(t, "release", "--server", server)
		if code != 0 {
			t.Fatalf("release: exit %d\n%s", code, errOut)
		}
		golden(t, "release-steps.golden", []byte(errOut))
		if want := "RC2 (1a2b3c4) is live on prod: 2 replicas, sha256:abababababab\n"; out != want {
			t.Errorf("stdout = %q, want %q", out, want)
		}

		app.next = 0
		out, _, code = slipway(t, "release", "--server", server, "-o", "json")
		var got api.DeploymentDetail
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.State != ledger.StateSucceeded || len(got.Steps) != 4 {
			t.Errorf("release -o json: exit %d, %v; want the deployment with its 4 steps:\n%s", code, err, out)
		}
	})
	t.Run("rolled back", func(t *testing.T) {
		app := &scriptedApp{fakeApp: fakeApp{name: "web", envs: []string{"dev", "prod"}, log: &[]string{}, mu: &sync.Mutex{}},
			kind: ledger.KindRelease, reason: "prod did not become healthy: replica prod-1 not ready within 60s; rolled back to RC1 (9f8e7d6)"}
		failed := deploy("failed", "roll out RC2 to prod: not ready within 60s (replica prod-1)\n  its last log lines:", 60*s)
		app.frames = append(frames,
			frame{ledger.StateRolling, "deploy", []ledger.Step{preflight, tagsDone, failed, st(4, "undo", "running", 60125*ms, 0, "")}},
			frame{ledger.StateRolledBack, "deploy", []ledger.Step{preflight, tagsDone, failed, st(4, "undo", "succeeded", 60125*ms, 1500*ms, "prod is back on RC1")}},
		)
		server := serveApp(t, app)
		out, errOut, code := slipway(t, "release", "--server", server)
		if code != 1 {
			t.Fatalf("a rolled back release: exit %d, want 1\n%s", code, errOut)
		}
		golden(t, "release-rolled-back.golden", []byte(errOut))
		want := "release of RC2 (1a2b3c4) to prod rolled-back: prod did not become healthy: replica prod-1 not ready within 60s; rolled back to RC1 (9f8e7d6)\n" +
			"prod runs 1a2b3c4, 1/1 replicas ready\n"
		if out != want {
			t.Errorf("stdout =\n%s\nwant\n%s", out, want)
		}
	})
}
