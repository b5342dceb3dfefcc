//go:build bench

// Package status measures GET /api/v1/status of a controller running many
// apps (one, and twenty), each with 10,000 releases and 10,000 dev deploys
// in the ledger: the API round trip over loopback, the ledger's queries and
// git's answers:
//
//	go test -tags bench -run '^$' -bench . -benchtime 100x ./bench/status
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/apps"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/testenv"
)

// steadyRuntime reports every environment healthy: the benchmark measures
// the controller's side of status: the ledger, git and the API.
type steadyRuntime struct{}

func (steadyRuntime) Deploy(ctx context.Context, d ledger.Deployment) error { return nil }
func (steadyRuntime) Status(ctx context.Context, env string) (deploy.Status, error) {
	return deploy.Status{Environment: env, Replicas: deploy.Replicas{Ready: 1, Desired: 1}, Healthy: true}, nil
}

// controllerApp serves one controller as an App.
type controllerApp struct {
	*pipeline.Controller
	name string
}

func (a controllerApp) Name() string  { return a.name }
func (controllerApp) RepoURL() string { return "" }
func (a controllerApp) Environments() []string {
	var names []string
	for _, e := range a.Envs() {
		names = append(names, e.Name)
	}
	return names
}
func (controllerApp) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	return errors.ErrUnsupported
}
func (controllerApp) Builds(ctx context.Context, f ledger.BuildFilter) ([]ledger.Build, error) {
	return nil, nil
}
func (controllerApp) BuildLog(ctx context.Context, commit string, follow bool, w io.Writer) error {
	return ledger.ErrNotFound
}

type benchApps []api.App

func (b benchApps) List() []api.App { return b }
func (b benchApps) Get(name string) (api.App, bool) {
	for _, a := range b {
		if a.Name() == name {
			return a, true
		}
	}
	return nil, false
}
func (benchApps) Leftovers(ctx context.Context) ([]api.Leftover, error) { return nil, nil }
func (benchApps) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	return api.RemoveReport{}, errors.ErrUnsupported
}

func BenchmarkStatus1App(b *testing.B)   { benchmarkStatus(b, 1) }
func BenchmarkStatus20Apps(b *testing.B) { benchmarkStatus(b, 20) }

// benchmarkStatus is GET /api/v1/status over loopback against n apps, each
// with dev → staging → prod, 10,000 releases of prod and 10,000 deploys of
// dev in one ledger, and a repository of 200 commits on master, 50 of them
// not released.
func benchmarkStatus(b *testing.B, n int) {
	testenv.LookPath(b, "git")
	ctx := context.Background()
	dir := b.TempDir()
	origin := filepath.Join(dir, "origin")
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = origin
		cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@x", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@x")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := exec.Command("git", "init", "-q", "--initial-branch=master", origin).Run(); err != nil {
		b.Fatal(err)
	}
	var commits []string
	for i := range 200 {
		run("commit", "-q", "--allow-empty", "-m", fmt.Sprintf("change %d", i))
		commits = append(commits, run("rev-parse", "HEAD"))
	}
	released := commits[149]
	run("branch", "release", released)

	store, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var list benchApps
	for i := range n {
		name := fmt.Sprintf("app%02d", i+1)
		if err := seed(ctx, store, name, released); err != nil {
			b.Fatal(err)
		}
		src := gitsource.New(origin, filepath.Join(dir, name+".git"))
		if err := src.Fetch(ctx); err != nil {
			b.Fatal(err)
		}
		ctl, err := pipeline.New(pipeline.Config{
			App: name,
			Envs: []pipeline.Env{
				{Name: "dev", Branch: "master", Automatic: true, URL: "http://127.0.0.1:8081", Replicas: 1},
				{Name: "staging", From: "dev", Automatic: true, URL: "http://127.0.0.1:8082", Replicas: 1},
				{Name: "prod", Branch: "release", RequireVerifiedOn: "staging", URL: "http://127.0.0.1:8080", Replicas: 1},
			},
			PollInterval: time.Hour,
		}, pipeline.Deps{Repo: &apps.GitRepo{Source: src}, Deployer: steadyRuntime{}, Store: store.Deployments().ForApp(name)})
		if err != nil {
			b.Fatal(err)
		}
		list = append(list, controllerApp{ctl, name})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := api.NewServer(list, "t", nil)
	go srv.Serve(l)
	defer srv.Shutdown(ctx)
	c := api.NewClient("http://"+l.Addr().String(), "")

	all, err := c.StatusAll(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if len(all) != n {
		b.Fatalf("status of %d apps, want %d", len(all), n)
	}
	for _, st := range all {
		if p := st.Environments[2]; len(st.Pending) != 50 || p.Commit == nil || *p.Commit != released {
			b.Fatalf("%s: %d pending, prod on %v; want 50 pending and prod on the seeded release", st.App, len(st.Pending), p.Commit)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.StatusAll(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// seed writes 10,000 succeeded releases of app's prod and 10,000 deploys
// of its dev, the newest release on commit.
func seed(ctx context.Context, store *ledger.Store, app, commit string) error {
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO deployments (app, env, kind, trigger, commit_sha, image, digest,
		release_name, replicas, state, created_at, updated_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10000 {
		ts := t0.Add(time.Duration(i) * time.Hour).Format("2006-01-02T15:04:05.000000000Z")
		c := fmt.Sprintf("%040x", i)
		digest := fmt.Sprintf("sha256:%064x", i)
		if _, err := stmt.ExecContext(ctx, app, "dev", "deploy", "push to master", c, "r/"+app+"@"+digest, digest, "", 1, "succeeded", ts, ts, ts); err != nil {
			return err
		}
		if i == 9999 {
			c = commit
		}
		name := "RC" + t0.Add(time.Duration(i)*time.Hour).Format("20060102_1504")
		if _, err := stmt.ExecContext(ctx, app, "prod", "release", "release command", c, "r/"+app+"@"+digest, digest, name, 1, "succeeded", ts, ts, ts); err != nil {
			return err
		}
	}
	return tx.Commit()
}
