package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/dora"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// fakeApp is an api.App whose answers the test sets.
type fakeApp struct {
	name string
	envs []string

	mu      sync.Mutex
	status  pipeline.Status
	hist    []ledger.Deployment // newest first
	builds  []ledger.Build
	diff    []pipeline.Commit
	log     string
	calls   []string
	refuse  error // returned by Release
	statusN int
}

var (
	_ api.App     = (*fakeApp)(nil)
	_ BuildLogger = (*fakeApp)(nil)
)

func (f *fakeApp) Name() string           { return f.name }
func (f *fakeApp) RepoURL() string        { return "https://example.com/" + f.name + ".git" }
func (f *fakeApp) Environments() []string { return f.envs }

func (f *fakeApp) Status(ctx context.Context) (pipeline.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statusN++
	st := f.status
	st.App = f.name
	// Copies, so that setStatus never changes what a caller holds.
	st.Environments = slices.Clone(st.Environments)
	st.Pending = slices.Clone(st.Pending)
	return st, nil
}

func (f *fakeApp) setStatus(fn func(st *pipeline.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

func (f *fakeApp) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ledger.Deployment
	for _, d := range f.hist {
		if env == "" || d.Env == env {
			out = append(out, d)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

func (f *fakeApp) Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error) {
	return f.diff, nil
}

func (f *fakeApp) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.hist {
		if d.ID == id {
			return d, nil
		}
	}
	return ledger.Deployment{}, ledger.ErrNoDeployment
}

func (f *fakeApp) Steps(ctx context.Context, id int64) ([]ledger.Step, error) { return nil, nil }

func (f *fakeApp) DORA(ctx context.Context, since time.Duration) (dora.Report, error) {
	return dora.Report{}, errors.ErrUnsupported
}

func (f *fakeApp) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeApp) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeApp) Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error) {
	f.record(fmt.Sprintf("release env=%s commit=%s force=%v reason=%s trigger=%s", req.Env, req.Commit, req.Force, req.Reason, req.Trigger))
	if f.refuse != nil {
		return ledger.Deployment{}, f.refuse
	}
	return ledger.Deployment{ID: 99, Env: req.Env, Kind: ledger.KindRelease, State: ledger.StatePending}, nil
}

func (f *fakeApp) Rollback(ctx context.Context, req pipeline.RollbackRequest) (ledger.Deployment, error) {
	f.record(fmt.Sprintf("rollback env=%s target=%s", req.Env, req.Target))
	return ledger.Deployment{ID: 100, Env: req.Env, Kind: ledger.KindRollback, State: ledger.StatePending}, nil
}

func (f *fakeApp) Scale(ctx context.Context, env string, n int) (ledger.Deployment, error) {
	f.record(fmt.Sprintf("scale env=%s replicas=%d", env, n))
	return ledger.Deployment{ID: 101, Env: env, Kind: ledger.KindScale, State: ledger.StatePending}, nil
}

func (f *fakeApp) Stop(ctx context.Context, env string) (ledger.Deployment, error) {
	return ledger.Deployment{}, nil
}

func (f *fakeApp) Start(ctx context.Context, env string) (ledger.Deployment, error) {
	return ledger.Deployment{}, nil
}

func (f *fakeApp) Logs(ctx context.Context, env string, follow bool, w io.Writer) error { return nil }

func (f *fakeApp) Builds(ctx context.Context, filter ledger.BuildFilter) ([]ledger.Build, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.builds), nil
}

func (f *fakeApp) Poll() {}

func (f *fakeApp) Pushed(branch, commit string) {}

func (f *fakeApp) BuildLog(ctx context.Context, commit string, follow bool, w io.Writer) error {
	_, err := io.WriteString(w, f.log)
	return err
}

// fakeApps is an api.Apps of fake apps.
type fakeApps struct{ apps []*fakeApp }

func (f *fakeApps) List() []api.App {
	out := make([]api.App, len(f.apps))
	for i, a := range f.apps {
		out[i] = a
	}
	return out
}

func (f *fakeApps) Get(name string) (api.App, bool) {
	for _, a := range f.apps {
		if a.name == name {
			return a, true
		}
	}
	return nil, false
}

func (f *fakeApps) Leftovers(ctx context.Context) ([]api.Leftover, error) { return nil, nil }

func (f *fakeApps) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	return api.RemoveReport{}, nil
}

// fakeHub is a change hub: Publish wakes every subscription.
type fakeHub struct {
	mu   sync.Mutex
	subs map[*fakeSub]struct{}
}

type fakeSub struct {
	h    *fakeHub
	c    chan struct{}
	mu   sync.Mutex
	apps map[string]bool
}

func newFakeHub() *fakeHub { return &fakeHub{subs: map[*fakeSub]struct{}{}} }

func (h *fakeHub) Subscribe() Subscription {
	s := &fakeSub{h: h, c: make(chan struct{}, 1), apps: map[string]bool{}}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *fakeHub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func (h *fakeHub) Publish(app string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		s.apps[app] = true
		s.mu.Unlock()
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
}

func (s *fakeSub) C() <-chan struct{} { return s.c }

func (s *fakeSub) Take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for a := range s.apps {
		out = append(out, a)
	}
	sort.Strings(out)
	s.apps = map[string]bool{}
	return out
}

func (s *fakeSub) Cancel() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	delete(s.h.subs, s)
}

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)

func hash(c byte) string { return strings.Repeat(string(c), 40) }

// sampleApp is an app with dev and prod: prod runs release RC1 of commit
// a…, dev runs b…, whose subject is hostile.
func sampleApp(name string) *fakeApp {
	a, b := hash('a'), hash('b')
	digA, digB := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	f := &fakeApp{name: name, envs: []string{"dev", "prod"}, log: "testing…\nok\n"}
	f.status = pipeline.Status{
		Environments: []pipeline.EnvStatus{
			{Name: "dev", Mode: "automatic", Branch: "master", Commit: ptr(b), ShortCommit: ptr(b[:7]), Digest: ptr(digB),
				Image: ptr("127.0.0.1:5000/" + name + "@" + digB), Replicas: pipeline.Replicas{Ready: 2, Desired: 2}, Healthy: true,
				Since: ptr(t0.Add(-time.Hour)), URL: "http://127.0.0.1:8081"},
			{Name: "prod", Mode: "controlled", Branch: "release", Commit: ptr(a), ShortCommit: ptr(a[:7]), Digest: ptr(digA),
				Image: ptr("127.0.0.1:5000/" + name + "@" + digA), Release: ptr("RC20261126_0900"),
				Replicas: pipeline.Replicas{Ready: 3, Desired: 4}, Since: ptr(t0.Add(-24 * time.Hour)), URL: "http://127.0.0.1:8080"},
		},
		Pending: []pipeline.Commit{{Hash: b, Short: b[:7], Subject: "<script>alert(1)</script>", Author: "Mallory <m@example.com>", Time: t0.Add(-2 * time.Hour)}},
	}
	f.hist = []ledger.Deployment{
		{ID: 3, App: name, Env: "dev", Kind: ledger.KindDeploy, Trigger: "push to master", Commit: b, Digest: digB, State: ledger.StateSucceeded, Step: "verified", CreatedAt: t0.Add(-time.Hour), FinishedAt: t0.Add(-time.Hour)},
		{ID: 2, App: name, Env: "prod", Kind: ledger.KindRelease, Trigger: "release command", Commit: a, Digest: digA, ReleaseName: "RC20261126_0900", Replicas: 4, State: ledger.StateSucceeded, Step: "live", CreatedAt: t0.Add(-24 * time.Hour), FinishedAt: t0.Add(-24 * time.Hour)},
		{ID: 1, App: name, Env: "dev", Kind: ledger.KindDeploy, Trigger: "push to master", Commit: a, Digest: digA, State: ledger.StateSucceeded, Step: "verified", CreatedAt: t0.Add(-25 * time.Hour), FinishedAt: t0.Add(-25 * time.Hour)},
	}
	f.builds = []ledger.Build{
		{ID: 2, App: name, Commit: b, State: ledger.BuildPushed, Digest: digB, TestDuration: 3 * time.Second, BuildDuration: 2 * time.Second, Created: t0.Add(-61 * time.Minute)},
		{ID: 1, App: name, Commit: a, State: ledger.BuildPushed, Digest: digA, TestDuration: 3 * time.Second, BuildDuration: 2 * time.Second, Created: t0.Add(-25 * time.Hour)},
	}
	return f
}

// appList is an api.Apps of any apps.
type appList []api.App

func (l appList) List() []api.App { return l }

func (l appList) Get(name string) (api.App, bool) {
	for _, a := range l {
		if a.Name() == name {
			return a, true
		}
	}
	return nil, false
}

func (l appList) Leftovers(ctx context.Context) ([]api.Leftover, error) { return nil, nil }

func (l appList) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	return api.RemoveReport{}, nil
}

// listingApp is a fake app that lists its recent commits.
type listingApp struct {
	*fakeApp
	recent []pipeline.Commit
	asked  int
}

var _ CommitLister = (*listingApp)(nil)

func (l *listingApp) RecentCommits(ctx context.Context, limit int) ([]pipeline.Commit, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked++
	return l.recent, nil
}
