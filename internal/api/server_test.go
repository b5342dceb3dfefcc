package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// fakeApp answers from fixed data: the API's own logic (routing, auth,
// error mapping, encoding) is what these tests check; test/e2e runs the API
// over the real controller.
type fakeApp struct {
	name, repo string
	envs       []string

	mu         sync.Mutex
	released   []pipeline.ReleaseRequest
	rolledBack []pipeline.RollbackRequest
	calls      []string // stop ENV, start ENV, logs ENV
	polls      int
	pushed     []string // branch=commit of each Pushed
}

var commit = strings.Repeat("ab", 20)

func newFakeApp(name string, envs ...string) *fakeApp {
	if len(envs) == 0 {
		envs = []string{"dev", "prod"}
	}
	return &fakeApp{name: name, repo: "https://github.com/example/" + name + ".git", envs: envs}
}

func (f *fakeApp) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeApp) Name() string    { return f.name }
func (f *fakeApp) RepoURL() string { return f.repo }

func (f *fakeApp) Environments() []string { return f.envs }

func (f *fakeApp) Status(ctx context.Context) (pipeline.Status, error) {
	st := pipeline.Status{Pending: []pipeline.Commit{}}
	for _, e := range f.envs {
		st.Environments = append(st.Environments, pipeline.EnvStatus{Name: e, Commit: &commit, Tag: "env-" + e})
	}
	return st, nil
}

func (f *fakeApp) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	if env == "qa" {
		return nil, pipeline.ErrUnknownEnv
	}
	return []ledger.Deployment{{ID: 1, Env: "dev", Commit: commit}}, nil
}

func (f *fakeApp) Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error) {
	return nil, nil
}

func (f *fakeApp) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	if id != 7 {
		return ledger.Deployment{}, ledger.ErrNoDeployment
	}
	return ledger.Deployment{ID: 7, State: ledger.StateSucceeded}, nil
}

var stepTime = time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)

func (f *fakeApp) Steps(ctx context.Context, id int64) ([]ledger.Step, error) {
	if id != 7 {
		return nil, ledger.ErrNoDeployment
	}
	return []ledger.Step{
		{ID: 1, DeploymentID: 7, Name: "tags", State: ledger.StepSucceeded, Started: stepTime, Finished: stepTime.Add(time.Second)},
		{ID: 2, DeploymentID: 7, Name: "deploy", State: ledger.StepRunning, Started: stepTime.Add(time.Second),
			Message: "1 of 2 replicas of RC1 ready"},
	}, nil
}

func (f *fakeApp) Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error) {
	f.mu.Lock()
	f.released = append(f.released, req)
	f.mu.Unlock()
	if req.Commit == "old" {
		return ledger.Deployment{}, &pipeline.RefusedError{Env: "prod", Commit: "old", Reason: "not a fast-forward", Err: pipeline.ErrNotFastForward}
	}
	return ledger.Deployment{ID: 7, State: ledger.StatePending}, nil
}

func (f *fakeApp) Rollback(ctx context.Context, req pipeline.RollbackRequest) (ledger.Deployment, error) {
	f.mu.Lock()
	f.rolledBack = append(f.rolledBack, req)
	f.mu.Unlock()
	if req.Env == "" {
		return ledger.Deployment{}, pipeline.ErrBusy
	}
	return ledger.Deployment{ID: 8, Env: req.Env, Kind: ledger.KindRollback, State: ledger.StatePending}, nil
}

func (f *fakeApp) Scale(ctx context.Context, env string, n int) (ledger.Deployment, error) {
	return ledger.Deployment{}, errors.New("disk full")
}

func (f *fakeApp) Stop(ctx context.Context, env string) (ledger.Deployment, error) {
	f.record("stop " + env)
	return ledger.Deployment{ID: 9, Env: env, Kind: ledger.KindStop, State: ledger.StatePending}, nil
}

func (f *fakeApp) Start(ctx context.Context, env string) (ledger.Deployment, error) {
	f.record("start " + env)
	return ledger.Deployment{ID: 10, Env: env, Kind: ledger.KindStart, State: ledger.StatePending}, nil
}

func (f *fakeApp) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	f.record("logs " + env)
	if env == "prod" {
		return errors.ErrUnsupported
	}
	_, err := fmt.Fprintf(w, "%s-1 | listening\n", env)
	return err
}

func (f *fakeApp) Builds(ctx context.Context, filter ledger.BuildFilter) ([]ledger.Build, error) {
	return []ledger.Build{{ID: 3, Commit: commit, State: ledger.BuildPushed}}, nil
}

func (f *fakeApp) Poll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
}

func (f *fakeApp) Pushed(branch, commit string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	f.pushed = append(f.pushed, branch+"="+commit)
}

func (f *fakeApp) pollCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls
}

type fakeApps struct {
	apps    []*fakeApp
	removed []RemoveRequest
}

func (f *fakeApps) List() []App {
	list := make([]App, len(f.apps))
	for i, a := range f.apps {
		list[i] = a
	}
	return list
}

func (f *fakeApps) Get(name string) (App, bool) {
	for _, a := range f.apps {
		if a.name == name {
			return a, true
		}
	}
	return nil, false
}

func (f *fakeApps) Leftovers(ctx context.Context) ([]Leftover, error) {
	return []Leftover{{App: "old"}, {App: "web", Env: "qa"}}, nil
}

func (f *fakeApps) Remove(ctx context.Context, req RemoveRequest) (RemoveReport, error) {
	f.removed = append(f.removed, req)
	if _, ok := f.Get(req.App); ok && req.Env == "" {
		return RemoveReport{}, fmt.Errorf("remove %s: %w", req.App, ErrStillConfigured)
	}
	return RemoveReport{Removed: []string{"ledger rows of " + req.App}, Kept: []string{"registry tags"}}, nil
}

var _ Apps = (*fakeApps)(nil)

func startServer(t *testing.T, apps Apps) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(apps, "secret", nil)
	go s.Serve(l)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return "http://" + l.Addr().String()
}

func TestClientServer(t *testing.T) {
	app := newFakeApp("web")
	base := startServer(t, &fakeApps{apps: []*fakeApp{app}})
	ctx := context.Background()
	anon := NewClient(base, "")
	authed := NewClient(base, "secret")

	for _, name := range []string{"", "web"} {
		st, err := anon.Status(ctx, name)
		if err != nil || st.App != "web" || *st.Environments[0].Commit != commit {
			t.Errorf("anonymous status of %q from loopback: %+v, %v", name, st, err)
		}
	}
	if _, err := anon.Release(ctx, "", ReleaseRequest{}); code(err) != CodeUnauthorized {
		t.Errorf("release without token: %v, want unauthorized", err)
	}
	if _, err := NewClient(base, "wrong").Release(ctx, "web", ReleaseRequest{}); code(err) != CodeUnauthorized {
		t.Errorf("release with a wrong token: %v, want unauthorized", err)
	}
	d, err := authed.Release(ctx, "web", ReleaseRequest{Env: "prod", Commit: "abc", Force: true, Reason: "hotfix"})
	if err != nil || d.ID != 7 {
		t.Fatalf("release: %+v, %v", d, err)
	}
	want := []pipeline.ReleaseRequest{{Env: "prod", Commit: "abc", Force: true, Reason: "hotfix", Trigger: "release command"}}
	if diff := cmp.Diff(want, app.released); diff != "" {
		t.Errorf("release requests (-want +got):\n%s", diff)
	}
	d, err = authed.Wait(ctx, "web", 7, nil)
	if err != nil || d.State != ledger.StateSucceeded {
		t.Errorf("wait: %+v, %v", d, err)
	}
	if d, err := authed.Rollback(ctx, "", RollbackRequest{Env: "prod", Target: "RC1"}); err != nil || d.ID != 8 {
		t.Errorf("rollback: %+v, %v", d, err)
	}
	if diff := cmp.Diff([]pipeline.RollbackRequest{{Env: "prod", Target: "RC1", Trigger: "rollback command"}}, app.rolledBack); diff != "" {
		t.Errorf("rollback requests (-want +got):\n%s", diff)
	}
	h, err := anon.History(ctx, "web", "", 5)
	if err != nil || len(h.Deployments) != 1 || len(h.Builds) != 1 {
		t.Errorf("history: %+v, %v; want a deployment and a build", h, err)
	}
	if b, err := anon.Builds(ctx, "", 5); err != nil || len(b) != 1 {
		t.Errorf("builds: %+v, %v", b, err)
	}
	var logs strings.Builder
	if err := anon.Logs(ctx, "web", "dev", false, &logs); err != nil || logs.String() != "dev-1 | listening\n" {
		t.Errorf("logs: %q, %v", logs.String(), err)
	}

	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"refused", func() error { _, err := authed.Release(ctx, "", ReleaseRequest{Commit: "old"}); return err }, CodeRefused},
		{"busy", func() error { _, err := authed.Rollback(ctx, "web", RollbackRequest{}); return err }, CodeConflict},
		{"unknown env", func() error { _, err := anon.History(ctx, "", "qa", 0); return err }, CodeNotFound},
		{"unknown deployment", func() error { _, err := anon.Deployment(ctx, "web", 8); return err }, CodeNotFound},
		{"unknown app", func() error { _, err := anon.Status(ctx, "api"); return err }, CodeNotFound},
		{"internal", func() error { _, err := authed.Scale(ctx, "web", "prod", 2); return err }, CodeInternal},
		{"no logs", func() error { return anon.Logs(ctx, "web", "prod", false, io.Discard) }, CodeInvalid},
		{"logs of an unknown env", func() error { return anon.Logs(ctx, "web", "qa", false, io.Discard) }, CodeNotFound},
		{"stop without token", func() error { _, err := anon.Stop(ctx, "web", "dev"); return err }, CodeUnauthorized},
		{"start without token", func() error { _, err := anon.Start(ctx, "", "dev"); return err }, CodeUnauthorized},
		{"stop an unknown env", func() error { _, err := authed.Stop(ctx, "web", "qa"); return err }, CodeNotFound},
		{"remove without token", func() error { _, err := anon.Remove(ctx, RemoveRequest{App: "old"}); return err }, CodeUnauthorized},
		{"remove without app", func() error { _, err := authed.Remove(ctx, RemoveRequest{}); return err }, CodeInvalid},
		{"remove a configured app", func() error { _, err := authed.Remove(ctx, RemoveRequest{App: "web"}); return err }, CodeConflict},
	}
	for _, tt := range tests {
		if got := code(tt.call()); got != tt.code {
			t.Errorf("%s: code %q, want %q", tt.name, got, tt.code)
		}
	}
	if _, err := NewClient("http://127.0.0.1:1", "").Status(ctx, ""); !errors.Is(err, ErrUnreachable) {
		t.Errorf("status from nowhere: %v, want ErrUnreachable", err)
	}
}

func TestStopStartLeftoversRemove(t *testing.T) {
	app := newFakeApp("web")
	apps := &fakeApps{apps: []*fakeApp{app, newFakeApp("api")}}
	base := startServer(t, apps)
	ctx := context.Background()
	c := NewClient(base, "secret")

	d, err := c.Stop(ctx, "web", "dev")
	if err != nil || d.Kind != ledger.KindStop || d.Env != "dev" {
		t.Errorf("stop: %+v, %v", d, err)
	}
	d, err = c.Start(ctx, "web", "dev")
	if err != nil || d.Kind != ledger.KindStart || d.Env != "dev" {
		t.Errorf("start: %+v, %v", d, err)
	}
	if diff := cmp.Diff([]string{"stop dev", "start dev"}, app.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	left, err := c.Leftovers(ctx)
	if diff := cmp.Diff([]Leftover{{App: "old"}, {App: "web", Env: "qa"}}, left); err != nil || diff != "" {
		t.Errorf("leftovers: %v (-want +got):\n%s", err, diff)
	}
	rep, err := c.Remove(ctx, RemoveRequest{App: "web", Env: "qa", DeleteDatabase: true})
	if err != nil || len(rep.Removed) != 1 || len(rep.Kept) != 1 {
		t.Errorf("remove: %+v, %v", rep, err)
	}
	if diff := cmp.Diff([]RemoveRequest{{App: "web", Env: "qa", DeleteDatabase: true}}, apps.removed); diff != "" {
		t.Errorf("remove requests (-want +got):\n%s", diff)
	}
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// serve answers one request from a loopback client.
func serve(s *Server, method, target, token, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:5555"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w
}

// TestSeveralApps: with several apps, every route that does not name one
// answers 400 naming them; the scoped routes answer for their app.
func TestSeveralApps(t *testing.T) {
	web, api := newFakeApp("web"), newFakeApp("api", "dev", "staging", "prod")
	s := NewServer(&fakeApps{apps: []*fakeApp{web, api}}, "secret", nil)
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/api/v1/history", ""},
		{"GET", "/api/v1/diff?from=dev&to=prod", ""},
		{"GET", "/api/v1/deployments/7", ""},
		{"GET", "/api/v1/logs/dev", ""},
		{"GET", "/api/v1/builds", ""},
		{"POST", "/api/v1/releases", `{}`},
		{"POST", "/api/v1/rollbacks", `{}`},
		{"POST", "/api/v1/scale", `{"env":"dev","replicas":2}`},
		{"POST", "/api/v1/environments/dev/stop", ""},
		{"POST", "/api/v1/environments/dev/start", ""},
	} {
		w := serve(s, r.method, r.path, "secret", r.body)
		var e Error
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != http.StatusBadRequest || e.Code != CodeInvalid || !strings.Contains(e.Message, "several apps (web, api)") ||
			!strings.Contains(e.Message, "/api/v1/apps/web"+strings.TrimPrefix(strings.SplitN(r.path, "?", 2)[0], "/api/v1")) {
			t.Errorf("%s %s: %d %s; want 400 naming the apps and the scoped route", r.method, r.path, w.Code, w.Body)
		}
	}
	if len(web.released)+len(api.released)+len(web.calls)+len(api.calls) != 0 {
		t.Errorf("an unscoped request reached an app: %v %v %v %v", web.released, api.released, web.calls, api.calls)
	}

	for _, r := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/v1/apps/api/history", "", http.StatusOK},
		{"GET", "/api/v1/apps/api/diff?from=dev&to=prod", "", http.StatusOK},
		{"GET", "/api/v1/apps/api/deployments/7", "", http.StatusOK},
		{"GET", "/api/v1/apps/api/logs/staging", "", http.StatusOK},
		{"GET", "/api/v1/apps/api/builds", "", http.StatusOK},
		{"POST", "/api/v1/apps/api/releases", `{"env":"prod"}`, http.StatusAccepted},
		{"POST", "/api/v1/apps/api/rollbacks", `{"env":"prod"}`, http.StatusAccepted},
		{"POST", "/api/v1/apps/api/environments/staging/stop", "", http.StatusAccepted},
		{"POST", "/api/v1/apps/api/environments/staging/start", "", http.StatusAccepted},
		{"GET", "/api/v1/apps/nope/status", "", http.StatusNotFound},
		{"POST", "/api/v1/apps/nope/releases", `{}`, http.StatusNotFound},
	} {
		if w := serve(s, r.method, r.path, "secret", r.body); w.Code != r.want {
			t.Errorf("%s %s: %d %s; want %d", r.method, r.path, w.Code, w.Body, r.want)
		}
	}
	if diff := cmp.Diff([]string{"logs staging", "stop staging", "start staging"}, api.calls); diff != "" {
		t.Errorf("calls of api (-want +got):\n%s", diff)
	}
	if w := serve(s, "GET", "/api/v1/apps/nope/status", "", ""); !strings.Contains(w.Body.String(), `no app \"nope\" on this controller: its apps are web, api`) {
		t.Errorf("unknown app: %s", w.Body)
	}
	// Changes need the token on the scoped routes too.
	for _, path := range []string{"/api/v1/apps/api/releases", "/api/v1/apps/api/rollbacks", "/api/v1/apps/api/scale",
		"/api/v1/apps/api/environments/dev/stop", "/api/v1/apps/api/environments/dev/start", "/api/v1/remove"} {
		if w := serve(s, "POST", path, "", `{}`); w.Code != http.StatusUnauthorized {
			t.Errorf("POST %s without token: %d, want 401", path, w.Code)
		}
	}
}

// TestStatusJSON checks the documented shapes of GET /api/v1/status: one
// app's status (with its name) for one app, {"apps": [...]} for several.
func TestStatusJSON(t *testing.T) {
	keys := func(t *testing.T, body []byte) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return m
	}
	sortedKeys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		slices.Sort(k)
		return k
	}

	one := NewServer(&fakeApps{apps: []*fakeApp{newFakeApp("web")}}, "secret", nil)
	for _, path := range []string{"/api/v1/status", "/api/v1/apps/web/status"} {
		m := keys(t, serve(one, "GET", path, "", "").Body.Bytes())
		if diff := cmp.Diff([]string{"app", "environments", "pending"}, sortedKeys(m)); diff != "" {
			t.Errorf("%s with one app: keys (-want +got):\n%s", path, diff)
		}
		if m["app"] != "web" {
			t.Errorf("%s: app %v, want web", path, m["app"])
		}
		env := m["environments"].([]any)[0].(map[string]any)
		for _, k := range []string{"name", "branch", "mode", "from", "tag", "stopped", "commit", "replicas", "healthy"} {
			if _, ok := env[k]; !ok {
				t.Errorf("%s: an environment lacks %q: %v", path, k, env)
			}
		}
	}

	several := NewServer(&fakeApps{apps: []*fakeApp{newFakeApp("web"), newFakeApp("api", "dev", "staging", "prod")}}, "secret", nil)
	m := keys(t, serve(several, "GET", "/api/v1/status", "", "").Body.Bytes())
	if diff := cmp.Diff([]string{"apps"}, sortedKeys(m)); diff != "" {
		t.Fatalf("status with several apps: keys (-want +got):\n%s", diff)
	}
	var got []string
	for _, a := range m["apps"].([]any) {
		am := a.(map[string]any)
		if diff := cmp.Diff([]string{"app", "environments", "pending"}, sortedKeys(am)); diff != "" {
			t.Errorf("an app's status: keys (-want +got):\n%s", diff)
		}
		got = append(got, fmt.Sprintf("%s:%d", am["app"], len(am["environments"].([]any))))
	}
	if diff := cmp.Diff([]string{"web:2", "api:3"}, got); diff != "" {
		t.Errorf("apps in status (-want +got):\n%s", diff)
	}

	var list AppList
	if err := json.Unmarshal(serve(several, "GET", "/api/v1/apps", "", "").Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	want := AppList{Apps: []AppInfo{
		{Name: "web", Repo: "https://github.com/example/web.git", Environments: []string{"dev", "prod"}},
		{Name: "api", Repo: "https://github.com/example/api.git", Environments: []string{"dev", "staging", "prod"}},
	}}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("GET /api/v1/apps (-want +got):\n%s", diff)
	}

	// The client reads both shapes.
	ctx := context.Background()
	for _, tt := range []struct {
		apps []*fakeApp
		want []string
	}{
		{[]*fakeApp{newFakeApp("web")}, []string{"web"}},
		{[]*fakeApp{newFakeApp("web"), newFakeApp("api")}, []string{"web", "api"}},
	} {
		sts, err := NewClient(startServer(t, &fakeApps{apps: tt.apps}), "").StatusAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, st := range sts {
			names = append(names, st.App)
		}
		if diff := cmp.Diff(tt.want, names); diff != "" {
			t.Errorf("StatusAll (-want +got):\n%s", diff)
		}
	}
}

// TestLogsOnlyConfiguredEnvs: an environment name in a logs path reaches
// the runtime only if it is configured, however it is encoded.
func TestLogsOnlyConfiguredEnvs(t *testing.T) {
	app := newFakeApp("web")
	s := NewServer(&fakeApps{apps: []*fakeApp{app}}, "secret", nil)
	for _, path := range []string{
		"/api/v1/logs/..%2f..%2fetc%2fpasswd",
		"/api/v1/apps/web/logs/..%2f..%2fetc",
		"/api/v1/logs/%2e%2e",
		"/api/v1/logs/dev%2f..%2f..",
		"/api/v1/logs/qa",
		"/api/v1/logs/DEV",
		"/api/v1/logs/dev%00",
		"/api/v1/apps/web/environments/..%2fdev/stop",
	} {
		method := "GET"
		if strings.HasSuffix(path, "/stop") {
			method = "POST"
		}
		w := serve(s, method, path, "secret", "")
		if w.Code == http.StatusOK || w.Code == http.StatusAccepted {
			t.Errorf("%s %s: %d %s; want it refused", method, path, w.Code, w.Body)
		}
	}
	if len(app.calls) != 0 {
		t.Errorf("names that are not environments reached the app: %q", app.calls)
	}
	if w := serve(s, "GET", "/api/v1/logs/dev", "", ""); w.Code != http.StatusOK || w.Body.String() != "dev-1 | listening\n" {
		t.Errorf("logs of dev: %d %q", w.Code, w.Body)
	}
}

func TestReadsFromOutsideNeedToken(t *testing.T) {
	s := NewServer(&fakeApps{apps: []*fakeApp{newFakeApp("web")}}, "secret", nil)
	for _, path := range []string{"/api/v1/status", "/api/v1/apps", "/api/v1/apps/web/history", "/api/v1/leftovers"} {
		for _, tt := range []struct {
			remote, token string
			want          int
		}{
			{"127.0.0.1:5555", "", http.StatusOK},
			{"[::1]:5555", "", http.StatusOK},
			{"192.0.2.1:5555", "", http.StatusUnauthorized},
			{"192.0.2.1:5555", "secret", http.StatusOK},
		} {
			req := httptest.NewRequest("GET", path, nil)
			req.RemoteAddr = tt.remote
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Errorf("GET %s from %s (token %q): %d, want %d", path, tt.remote, tt.token, w.Code, tt.want)
			}
		}
	}
}

func TestLoadOrCreateToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, err := LoadOrCreateToken(dir)
	if err != nil || len(tok) != 64 {
		t.Fatalf("token %q, %v", tok, err)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi, err)
	}
	again, err := LoadOrCreateToken(dir)
	if err != nil || again != tok {
		t.Errorf("second load: %q, %v; want the same token", again, err)
	}
}

type fixedCounts []ledger.DeploymentCount

func (f fixedCounts) Counts(ctx context.Context) ([]ledger.DeploymentCount, error) { return f, nil }

func TestMetrics(t *testing.T) {
	s := NewServer(&fakeApps{apps: []*fakeApp{newFakeApp("web"), newFakeApp("api", "dev")}}, "secret", nil)
	s.EnableMetrics(func(app string) DeploymentCounter {
		return fixedCounts{{Env: "dev", Kind: ledger.KindDeploy, State: ledger.StateSucceeded, N: len(app)}}
	})
	body := serve(s, "GET", "/metrics", "", "").Body.String()
	for _, want := range []string{
		`slipway_status_up{app="web"} 1`,
		`slipway_status_up{app="api"} 1`,
		`slipway_environment_info{app="web",commit="` + commit + `",digest="",env="dev",release=""} 1`,
		`slipway_environment_replicas_ready{app="api",env="dev"} 0`,
		`slipway_environment_replicas_ready{app="web",env="prod"} 0`,
		`slipway_pending_commits{app="web"} 0`,
		`slipway_deployments{app="web",env="dev",kind="deploy",state="succeeded"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `app="api",env="prod"`) {
		t.Errorf("metrics have an environment api does not:\n%s", body)
	}
}

// Changes from another machine over plain HTTP are refused even with the
// token, unless the controller allows them; loopback and TLS are fine.
func TestPlainWritesFromOutside(t *testing.T) {
	s := NewServer(&fakeApps{apps: []*fakeApp{newFakeApp("web")}}, "secret", nil)
	post := func(remote string, tls bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/v1/scale", strings.NewReader(`{"env":"dev","replicas":2}`))
		req.RemoteAddr = remote
		if tls {
			req.TLS = &tlsState
		}
		req.Header.Set("Authorization", "Bearer secret")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w
	}
	if w := post("192.0.2.1:5555", false); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "--api-allow-plain-writes") {
		t.Errorf("plain write from outside: %d %s, want 403 naming the flag", w.Code, w.Body)
	}
	for _, tt := range []struct {
		remote string
		tls    bool
	}{{"127.0.0.1:5555", false}, {"[::1]:5555", false}, {"192.0.2.1:5555", true}} {
		if w := post(tt.remote, tt.tls); w.Code == http.StatusForbidden {
			t.Errorf("write from %s (TLS %v) refused: %s", tt.remote, tt.tls, w.Body)
		}
	}
	s.AllowPlainWrites()
	if w := post("192.0.2.1:5555", false); w.Code == http.StatusForbidden {
		t.Errorf("plain write from outside refused although allowed: %s", w.Body)
	}
}

var tlsState tls.ConnectionState

// TestDeploymentJSON checks the documented shape of GET
// /api/v1/deployments/{id}: the deployment's fields flattened, and steps.
func TestDeploymentJSON(t *testing.T) {
	s := NewServer(&fakeApps{apps: []*fakeApp{newFakeApp("web")}}, "secret", nil)
	for _, path := range []string{"/api/v1/deployments/7", "/api/v1/apps/web/deployments/7"} {
		w := serve(s, "GET", path, "", "")
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "env", "kind", "state", "step", "createdAt", "steps"} {
			if _, ok := m[k]; !ok {
				t.Errorf("GET %s: no %q in %s", path, k, w.Body)
			}
		}
		steps, _ := m["steps"].([]any)
		if len(steps) != 2 {
			t.Fatalf("GET %s: steps %v, want two", path, m["steps"])
		}
		want := map[string]any{"id": 2.0, "deploymentId": 7.0, "name": "deploy", "state": "running",
			"started": "2026-11-27T09:30:01Z", "message": "1 of 2 replicas of RC1 ready"}
		if diff := cmp.Diff(want, steps[1]); diff != "" {
			t.Errorf("GET %s: a running step (-want +got):\n%s", path, diff)
		}
		if fin := steps[0].(map[string]any)["finished"]; fin != "2026-11-27T09:30:01Z" {
			t.Errorf("GET %s: a finished step's end = %v", path, fin)
		}
	}
	if w := serve(s, "GET", "/api/v1/deployments/8", "", ""); w.Code != http.StatusNotFound {
		t.Errorf("GET an unknown deployment: %d %s, want 404", w.Code, w.Body)
	}
	if w := serve(s, "GET", "/api/v1/deployments/x", "", ""); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "is not a number") {
		t.Errorf("GET a deployment by a bad id: %d %s, want 400 saying so", w.Code, w.Body)
	}

	srv := httptest.NewServer(s)
	defer srv.Close()
	c := NewClient(srv.URL, "")
	var seen int
	d, err := c.Follow(t.Context(), "web", 7, func(DeploymentDetail) { seen++ })
	if err != nil || d.ID != 7 || len(d.Steps) != 2 || d.Steps[1].Message != "1 of 2 replicas of RC1 ready" || seen != 1 {
		t.Errorf("Follow = %+v, %v after %d calls; want deployment 7 with its steps, one call", d, err, seen)
	}
}
