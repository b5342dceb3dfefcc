//go:build integration

package local

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/deploytest"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// builtBirthdayApp builds two commits of the sample app the way slipway
// does (internal/build, pushed to the embedded registry) and returns them
// as releases, with a third that cannot start (its database is
// unreachable).
func builtBirthdayApp(t testing.TB) (v1r, v2r, broken deploytest.Release) {
	t.Helper()
	ctx := context.Background()
	repo, _ := testenv.SampleAppRepo(t)

	reg, l, err := registry.Listen(ctx, "127.0.0.1:0", t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })

	dataDir := t.TempDir()
	store, err := ledger.Open(ctx, filepath.Join(dataDir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := config.Default()
	cfg.App = "birthday-app"
	cfg.Repo.URL = repo
	cfg.Test.Command = "true" // the app's own tests run in its module's suite
	b := build.New(cfg, gitsource.New(repo, filepath.Join(dataDir, gitsource.MirrorDir)), registry.NewClient(),
		l.Addr().String()+"/birthday-app", store, dataDir)
	release := func() deploytest.Release {
		res, err := b.Run(ctx, build.Request{Trigger: "test"})
		if err != nil {
			t.Fatalf("build birthday-app: %v", err)
		}
		return deploytest.Release{Image: res.Reference(), Commit: res.Build.Commit, Version: res.Build.Commit[:7]}
	}
	v1r = release()
	if err := os.WriteFile(filepath.Join(repo, "CHANGES"), []byte("second build\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "add", "CHANGES")
	testenv.Git(t, repo, "commit", "-q", "-m", "second build")
	v2r = release()
	broken = v2r
	broken.Version = "no-database"
	broken.Env = map[string]string{"DATABASE_URL": "postgres://app:app@127.0.0.1:1/app?connect_timeout=1"}
	return v1r, v2r, broken
}

func birthdayBase(env string) deploy.Spec {
	return deploy.Spec{
		Environment: env, App: "birthday-app", Port: 8080, ListenAddr: "127.0.0.1:0",
		Env:           map[string]string{"DATABASE_URL": config.LocalDatabaseURL("birthday-app")},
		ReadinessPath: "/readyz", LivenessPath: "/healthz",
		Strategy: deploy.Strategy{TerminationGracePeriod: 10 * time.Second},
		// The configuration's default limits: the app runs within them.
		Resources: deploy.Resources{MemoryBytes: 512 << 20, Pids: 1024},
	}
}

// TestBirthdayApp runs the conformance suite and the zero-downtime check
// with the sample app built by slipway.
func TestBirthdayApp(t *testing.T) {
	v1r, v2r, broken := builtBirthdayApp(t)

	t.Run("conformance", func(t *testing.T) {
		deploytest.Run(t, func(t testing.TB) deploy.Backend {
			return newTestBackend(t, shortTempDir(t))
		}, deploytest.Fixture{
			V1: v1r, V2: v2r, Broken: broken,
			Spec:               func(t testing.TB, env string) deploy.Spec { return birthdayBase(env) },
			VersionPath:        "/version",
			BrokenReadyTimeout: 10 * time.Second,
		})
	})

	t.Run("zero downtime", func(t *testing.T) {
		ctx := t.Context()
		be := newTestBackend(t, shortTempDir(t))
		spec := func(rel deploytest.Release, replicas int) deploy.Spec {
			s := birthdayBase("zdt")
			s.Image, s.Commit, s.Version, s.Replicas = rel.Image, rel.Commit, rel.Version, replicas
			maps.Copy(s.Env, rel.Env)
			// A good build gets time to start on a busy machine; the one
			// without a database exits at once whatever the timeout.
			s.Strategy.ReadyTimeout = 30 * time.Second
			return s
		}
		if err := be.Apply(ctx, spec(v1r, 3)); err != nil {
			t.Fatal(err)
		}
		st, err := be.Status(ctx, "zdt")
		if err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 && st.Isolation != deploy.IsolationSandbox {
			t.Errorf("as root, the app runs in %q, want %q", st.Isolation, deploy.IsolationSandbox)
		}
		req, _ := http.NewRequest("PUT", st.URL+"/hello/alice", strings.NewReader(`{"dateOfBirth":"1990-02-14"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT /hello/alice: %v %v", resp, err)
		}
		resp.Body.Close()
		l := startLoad(t, st.URL+"/hello/alice", 300)
		phase := func(name string, do func() error) {
			t.Helper()
			before, start := l.counts(), time.Now()
			err := do()
			time.Sleep(300 * time.Millisecond)
			l.check(t, name, before, time.Since(start))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		phase("steady, 3 replicas", func() error { time.Sleep(time.Second); return nil })
		phase("rolling update to the second build", func() error { return be.Apply(ctx, spec(v2r, 3)) })
		phase("scale down 3 -> 2", func() error { return be.Apply(ctx, spec(v2r, 2)) })
		phase("aborted update (no database)", func() error {
			var re *deploy.RolloutError
			if err := be.Apply(ctx, spec(broken, 2)); !errors.As(err, &re) {
				return errors.New("the build without a database did not fail the rollout: " + errString(err))
			}
			return nil
		})
		l.stop()
		l.check(t, "total", counts{}, time.Since(l.start))
		st, err = be.Status(ctx, "zdt")
		if err != nil || st.Commit != v2r.Commit || st.Replicas.Ready != 2 {
			t.Errorf("at the end: %+v, %v; want the second build with 2 ready replicas", st, err)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
