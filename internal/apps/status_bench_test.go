package apps

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
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/testenv"
)

// steadyRuntime reports every environment healthy; the benchmark measures
// the controller's side of status: the ledger, git and the API.
type steadyRuntime struct{}

func (steadyRuntime) Deploy(ctx context.Context, d ledger.Deployment) error { return nil }
func (steadyRuntime) Status(ctx context.Context, env string) (deploy.Status, error) {
	return deploy.Status{Environment: env, Replicas: deploy.Replicas{Ready: 4, Desired: 4}, Healthy: true}, nil
}

// controllerApp serves one controller as an App: the benchmark only asks
// for its status.
type controllerApp struct{ *pipeline.Controller }

func (controllerApp) Name() string    { return "app" }
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

type benchApps struct{ app controllerApp }

func (b benchApps) List() []api.App { return []api.App{b.app} }
func (b benchApps) Get(name string) (api.App, bool) {
	return b.app, name == b.app.Name()
}
func (benchApps) Leftovers(ctx context.Context) ([]api.Leftover, error) { return nil, nil }
func (benchApps) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveReport, error) {
	return api.RemoveReport{}, errors.ErrUnsupported
}

// BenchmarkStatus is `slipway status` against a controller whose ledger
// holds 10,000 releases (plus as many dev deploys) and whose repository has
// 200 commits on master, 50 of them not released: one API round trip over
// loopback, the ledger queries and git log.
func BenchmarkStatus(b *testing.B) {
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
	if err := seed(ctx, store, released); err != nil {
		b.Fatal(err)
	}
	src := gitsource.New(origin, filepath.Join(dir, "mirror.git"))
	if err := src.Fetch(ctx); err != nil {
		b.Fatal(err)
	}
	ctl, err := pipeline.New(pipeline.Config{
		Envs: []pipeline.Env{
			{Name: "dev", Branch: "master", Automatic: true, URL: "http://127.0.0.1:8081", Replicas: 2},
			{Name: "prod", Branch: "release", RequireVerifiedOn: "dev", URL: "http://127.0.0.1:8080", Replicas: 4},
		},
		PollInterval: time.Hour,
	}, pipeline.Deps{Repo: &GitRepo{Source: src}, Deployer: steadyRuntime{}, Store: store.Deployments()})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := api.NewServer(benchApps{controllerApp{ctl}}, "t", nil)
	go srv.Serve(l)
	defer srv.Shutdown(ctx)
	c := api.NewClient("http://"+l.Addr().String(), "")

	st, err := c.Status(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	if len(st.Pending) != 50 || *st.Environments[1].Commit != released {
		b.Fatalf("status: %d pending, prod on %v; want 50 pending and prod on the seeded release", len(st.Pending), st.Environments[1].Commit)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Status(ctx, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// seed writes 10,000 succeeded releases of prod and 10,000 deploys of dev,
// the newest release on commit.
func seed(ctx context.Context, store *ledger.Store, commit string) error {
	d := store.Deployments()
	db := store.DB()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO deployments (env, kind, trigger, commit_sha, image, digest,
		release_name, replicas, state, created_at, updated_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10000 {
		ts := t0.Add(time.Duration(i) * time.Hour).Format("2006-01-02T15:04:05.000000000Z")
		c := fmt.Sprintf("%040x", i)
		digest := fmt.Sprintf("sha256:%064x", i)
		if _, err := stmt.ExecContext(ctx, "dev", "deploy", "push to master", c, "r/app@"+digest, digest, "", 2, "succeeded", ts, ts, ts); err != nil {
			return err
		}
		if i == 9999 {
			c = commit
		}
		name := "RC" + t0.Add(time.Duration(i)*time.Hour).Format("20060102_1504")
		if _, err := stmt.ExecContext(ctx, "prod", "release", "release command", c, "r/app@"+digest, digest, name, 4, "succeeded", ts, ts, ts); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	rels, err := d.Releases(ctx, "prod", 20000)
	if err != nil {
		return err
	}
	if len(rels) != 10000 {
		return fmt.Errorf("seeded %d releases, want 10000", len(rels))
	}
	return nil
}
