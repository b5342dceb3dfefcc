package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// fakeApp is an app of a fake controller: it records what the CLI asks
// and answers with deployments that have already succeeded.
type fakeApp struct {
	name, repo string
	envs       []string
	log        *[]string
	mu         *sync.Mutex
}

func (f fakeApp) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.log = append(*f.log, f.name+": "+fmt.Sprintf(format, args...))
}

func (f fakeApp) Name() string    { return f.name }
func (f fakeApp) RepoURL() string { return f.repo }

func (f fakeApp) Environments() []string { return f.envs }

func (f fakeApp) Status(ctx context.Context) (pipeline.Status, error) {
	c := strings.Repeat("1a2b3c4d", 5)
	st := pipeline.Status{App: f.name, Pending: []pipeline.Commit{}}
	for i, e := range f.envs {
		es := pipeline.EnvStatus{Name: e, URL: fmt.Sprintf("http://127.0.0.1:%d", 8081+i), Replicas: pipeline.Replicas{Ready: 1, Desired: 1},
			Commit: &c, Healthy: true}
		if e == "staging" {
			es.Stopped, es.Healthy, es.Replicas = true, false, pipeline.Replicas{}
		}
		st.Environments = append(st.Environments, es)
	}
	return st, nil
}

func (f fakeApp) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	f.record("history %q %d", env, limit)
	return nil, nil
}

func (f fakeApp) Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error) {
	return nil, nil
}

func (f fakeApp) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	kinds := map[int64]ledger.DeploymentKind{1: ledger.KindRelease, 2: ledger.KindRollback, 3: ledger.KindStop, 4: ledger.KindStart}
	return ledger.Deployment{ID: id, Env: "prod", Kind: kinds[id], Commit: strings.Repeat("1a2b3c4d", 5), ReleaseName: "RC1",
		Replicas: 2, Digest: "sha256:ab", State: ledger.StateSucceeded}, nil
}

func (f fakeApp) Steps(ctx context.Context, id int64) ([]ledger.Step, error) {
	return []ledger.Step{}, nil
}

func (f fakeApp) Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error) {
	f.record("release env=%q commit=%q", req.Env, req.Commit)
	return f.Deployment(ctx, 1)
}

func (f fakeApp) Rollback(ctx context.Context, req pipeline.RollbackRequest) (ledger.Deployment, error) {
	f.record("rollback env=%q target=%q", req.Env, req.Target)
	return f.Deployment(ctx, 2)
}

func (f fakeApp) Scale(ctx context.Context, env string, n int) (ledger.Deployment, error) {
	f.record("scale %s=%d", env, n)
	return f.Deployment(ctx, 1)
}

func (f fakeApp) Stop(ctx context.Context, env string) (ledger.Deployment, error) {
	f.record("stop %s", env)
	return f.Deployment(ctx, 3)
}

func (f fakeApp) Start(ctx context.Context, env string) (ledger.Deployment, error) {
	f.record("start %s", env)
	return f.Deployment(ctx, 4)
}

func (f fakeApp) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	f.record("logs %s", env)
	_, err := fmt.Fprintf(w, "%s-1 | hello\n", env)
	return err
}

func (f fakeApp) Builds(ctx context.Context, filter ledger.BuildFilter) ([]ledger.Build, error) {
	return []ledger.Build{{ID: 3, App: f.name, Commit: strings.Repeat("1a2b3c4d", 5), State: ledger.BuildPushed}}, nil
}

func (f fakeApp) Poll() {}

func (f fakeApp) Pushed(branch, commit string) {}

type fakeApps struct {
	apps []fakeApp
	log  *[]string
}

func (f fakeApps) List() []api.App {
	var l []api.App
	for _, a := range f.apps {
		l = append(l, a)
	}
	return l
}

func (f fakeApps) Get(name string) (api.App, bool) {
	for _, a := range f.apps {
		if a.name == name {
			return a, true
		}
	}
	return nil, false
}

func (f fakeApps) Leftovers(ctx context.Context) ([]api.Leftover, error) {
	return []api.Leftover{{App: "old"}, {App: "web", Env: "qa"}}, nil
}

func (f fakeApps) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	*f.log = append(*f.log, fmt.Sprintf("remove %+v", req))
	return api.RemoveReport{Removed: []string{"the ledger's rows of " + req.App}, Kept: []string{"its database (--delete-database deletes it)"}}, nil
}

// startController serves a fake controller running apps (name=repo) and
// returns its URL and the log of what it was asked.
func startController(t *testing.T, apps ...string) (string, *[]string) {
	t.Helper()
	log := &[]string{}
	mu := &sync.Mutex{}
	fa := fakeApps{log: log}
	for _, a := range apps {
		name, repo, _ := strings.Cut(a, "=")
		fa.apps = append(fa.apps, fakeApp{name: name, repo: repo, envs: []string{"dev", "staging", "prod"}, log: log, mu: mu})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := api.NewServer(fa, "tok", nil)
	go s.Serve(l)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	t.Setenv(envToken, "tok")
	return "http://" + l.Addr().String(), log
}

func slipway(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestSeveralAppsCLI(t *testing.T) {
	t.Chdir(t.TempDir()) // not in a git clone
	server, log := startController(t, "web=https://github.com/example/web.git", "api=git@github.com:example/api.git")

	out, _, code := slipway(t, "status", "--server", server)
	if code != 0 || !strings.HasPrefix(out, "APP  ENVIRONMENT") || !strings.Contains(out, "api  staging") ||
		!strings.Contains(out, "web/staging: stopped; slipway start staging --app web starts it again") {
		t.Errorf("status of every app: exit %d\n%s", code, out)
	}
	out, _, code = slipway(t, "status", "--server", server, "-o", "json")
	var all api.AppsStatus
	if err := json.Unmarshal([]byte(out), &all); code != 0 || err != nil || len(all.Apps) != 2 || all.Apps[1].App != "api" {
		t.Errorf("status -o json of every app: exit %d, %v\n%s", code, err, out)
	}
	out, _, code = slipway(t, "status", "--server", server, "-a", "api", "-o", "json")
	var one pipeline.Status
	if err := json.Unmarshal([]byte(out), &one); code != 0 || err != nil || one.App != "api" || len(one.Environments) != 3 {
		t.Errorf("status --app api -o json: exit %d, %v\n%s", code, err, out)
	}

	// Without --app, outside a clone of either, the CLI names the apps.
	_, errOut, code := slipway(t, "release", "--server", server)
	if code != 2 || !strings.Contains(errOut, "the controller runs several apps (web, api): name one with --app, e.g. slipway release --app web") {
		t.Errorf("release without --app: exit %d: %s", code, errOut)
	}

	for _, args := range [][]string{
		{"release", "--app", "web", "--env", "prod", "1a2b3c4"},
		{"rollback", "-a", "api", "--env", "prod", "RC1"},
		{"stop", "staging", "--app", "web"},
		{"start", "staging", "--app", "web"},
		{"scale", "dev=3", "--app", "api"},
		{"history", "prod", "--app", "api", "--limit", "5"},
		{"remove", "--app", "old", "--env", "qa", "--delete-tags"},
	} {
		if _, errOut, code := slipway(t, append(args, "--server", server)...); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
	want := []string{
		`web: release env="prod" commit="1a2b3c4"`,
		`api: rollback env="prod" target="RC1"`,
		`web: stop staging`,
		`web: start staging`,
		`api: scale dev=3`,
		`api: history "prod" 5`,
		`remove {App:old Env:qa DeleteDatabase:false DeleteTags:true}`,
	}
	if diff := cmp.Diff(want, *log); diff != "" {
		t.Errorf("what the controller was asked (-want +got):\n%s", diff)
	}

	out, _, _ = slipway(t, "stop", "staging", "--app", "web", "--server", server)
	if out != "prod is stopped: its address answers 503 until slipway start prod\n" {
		t.Errorf("stop's outcome: %q", out)
	}
	out, _, _ = slipway(t, "remove", "--app", "old", "--server", server)
	if want := "removed:\n  the ledger's rows of old\nkept:\n  its database (--delete-database deletes it)\n"; out != want {
		t.Errorf("remove's report:\n%s\nwant:\n%s", out, want)
	}
	_, errOut, code = slipway(t, "remove", "--server", server)
	if code != 2 || !strings.Contains(errOut, "remove needs --app APP; what left the configuration:\n  slipway remove --app old\n  slipway remove --app web --env qa") {
		t.Errorf("remove without --app: exit %d: %s", code, errOut)
	}
	_, errOut, code = slipway(t, "logs", "qa", "--app", "web", "--server", server)
	if code != 1 || !strings.Contains(errOut, `web has no environment "qa": its environments are dev, staging, prod`) {
		t.Errorf("logs of an unknown environment: exit %d: %s", code, errOut)
	}
	_, errOut, code = slipway(t, "history", "--app", "nope", "--server", server)
	if code != 1 || !strings.Contains(errOut, `no app "nope" on this controller: its apps are web, api`) {
		t.Errorf("history of an unknown app: exit %d: %s", code, errOut)
	}
}

// TestAppFromOrigin: in a clone of one app's repository, commands act on
// that app without --app.
func TestAppFromOrigin(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: the app is found from the clone's origin remote")
	}
	dir := t.TempDir()
	for _, args := range [][]string{{"init", "-q", dir}, {"-C", dir, "remote", "add", "origin", "https://git@GitHub.com/example/API/"}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	t.Chdir(dir)
	server, log := startController(t, "web=https://github.com/example/web.git", "api=git@github.com:example/api.git")
	if _, errOut, code := slipway(t, "logs", "dev", "--server", server); code != 0 {
		t.Fatalf("logs dev: exit %d: %s", code, errOut)
	}
	if diff := cmp.Diff([]string{"api: logs dev"}, *log); diff != "" {
		t.Errorf("what the controller was asked (-want +got):\n%s", diff)
	}
}

func TestChooseApp(t *testing.T) {
	apps := []api.AppInfo{{Name: "web", Repo: "/srv/git/web.git"}, {Name: "api", Repo: "ssh://git@example.com/team/api.git"}}
	for _, tt := range []struct {
		apps    []api.AppInfo
		origin  string
		want    string
		wantErr string
	}{
		{apps: apps[:1], want: "web"},
		{apps: apps[:1], origin: "/elsewhere", want: "web"},
		{apps: apps, origin: "/srv/git/web", want: "web"},
		{apps: apps, origin: "file:///srv/git/web.git/", want: "web"},
		{apps: apps, origin: "git@example.com:team/api", want: "api"},
		{apps: apps, wantErr: "the controller runs several apps (web, api): name one with --app, e.g. slipway status --app web, or run the command in a clone of the app's repository"},
		{apps: apps, origin: "https://example.com/team/other.git", wantErr: "the controller runs several apps (web, api) and none has this directory's origin (https://example.com/team/other.git) as its repository: name one with --app, e.g. slipway status --app web"},
		{apps: nil, wantErr: "the controller runs no app: check its configuration"},
	} {
		got, err := chooseApp(tt.apps, tt.origin, "slipway status --app APP")
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("chooseApp(%d apps, origin %q) = %q, %v; want %q, %q", len(tt.apps), tt.origin, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRenderStatusAll(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	c1, c2 := strings.Repeat("1a2b3c4d", 5), strings.Repeat("9f8e7d6c", 5)
	digest := "sha256:" + strings.Repeat("ab", 32)
	sts := []pipeline.Status{
		{App: "web", Environments: []pipeline.EnvStatus{
			{Name: "dev", Branch: "master", Mode: "automatic", Commit: &c2, Digest: &digest, Replicas: pipeline.Replicas{Ready: 2, Desired: 2},
				Healthy: true, Since: ptr(now.Add(-time.Hour)), URL: "http://127.0.0.1:8081"},
			{Name: "staging", Mode: "automatic", From: "dev", Commit: &c1, Digest: &digest, Stopped: true, URL: "http://127.0.0.1:8082"},
			{Name: "prod", Branch: "release", Mode: "controlled", Commit: &c1, Release: ptr("RC20261127_0930"), Digest: &digest,
				Replicas: pipeline.Replicas{Ready: 4, Desired: 4}, Healthy: true, Since: ptr(now.Add(-3 * time.Hour)), URL: "http://127.0.0.1:8080",
				Rollout: &pipeline.Rollout{Kind: "release", Commit: c2, Release: "RC20261127_1000", Step: "rollout"}},
		}, Pending: []pipeline.Commit{{Hash: c2, Short: c2[:7], Subject: "Say hi"}}},
		{App: "api", Environments: []pipeline.EnvStatus{
			{Name: "dev", Branch: "main", URL: "http://127.0.0.1:9081"},
			{Name: "prod", Branch: "release", URL: "http://127.0.0.1:9080"},
		}},
	}
	var buf bytes.Buffer
	if err := renderStatusAll(&buf, sts, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-apps.golden", buf.Bytes())
}
