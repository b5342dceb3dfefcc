package apps

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// The runtime gets an environment's front-end settings as configured.
func TestSpecCarriesFrontend(t *testing.T) {
	c := config.Default()
	c.App = "birthday-app"
	e := &c.Environments[1]
	e.Frontend.MaxHeaderBytes = 64 << 10
	e.Frontend.BodyTimeout = 5 * time.Second
	e.Frontend.TrustedProxies = []string{"10.0.0.0/8"}
	e.Frontend.TLS = config.TLS{ACME: config.ACME{Domains: []string{"app.example.com"}, Email: "ops@example.com"}, RedirectFrom: ":80"}
	got, err := Runtime{Config: c}.Spec(ledger.Deployment{Env: "prod", Commit: strings.Repeat("a", 40), Replicas: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := deploy.Frontend{
		MaxHeaderBytes: 64 << 10, HeaderTimeout: 10 * time.Second, BodyTimeout: 5 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxConnections: 10000,
		TrustedProxies: []string{"10.0.0.0/8"},
		TLS:            &deploy.TLS{ACMEDomains: []string{"app.example.com"}, ACMEEmail: "ops@example.com", RedirectFrom: ":80"},
	}
	if diff := cmp.Diff(want, got.Frontend); diff != "" {
		t.Errorf("prod's front end (-want +got):\n%s", diff)
	}
	dev, err := Runtime{Config: c}.Spec(ledger.Deployment{Env: "dev", Commit: strings.Repeat("a", 40), Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Frontend.TLS != nil {
		t.Errorf("dev has no TLS configured, but its spec carries %+v", dev.Frontend.TLS)
	}
}

// TestSpecDatabaseURL checks what each runtime's environments get as
// DATABASE_URL.
func TestSpecDatabaseURL(t *testing.T) {
	d := ledger.Deployment{Env: "dev", Commit: "0123456789abcdef0123456789abcdef01234567", Replicas: 1}
	for _, tt := range []struct {
		name      string
		runtime   string
		configure func(e *config.Environment)
		want      string // "" for none
	}{
		{"local default", config.RuntimeLocal, func(*config.Environment) {}, "sqlite:$DATA_DIR/birthday-app.db"},
		{"local databaseURL", config.RuntimeLocal, func(e *config.Environment) { e.DatabaseURL = "postgres://app@db/app" }, "postgres://app@db/app"},
		{"local env", config.RuntimeLocal, func(e *config.Environment) { e.Env = map[string]string{"DATABASE_URL": "sqlite:/srv/a.db"} }, "sqlite:/srv/a.db"},
		{"kubernetes default", config.RuntimeKubernetes, func(*config.Environment) {}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.App, cfg.Runtime = "birthday-app", tt.runtime
			tt.configure(&cfg.Environments[0])
			spec, err := Runtime{Config: cfg}.Spec(d)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := spec.Env["DATABASE_URL"]
			if tt.want == "" && ok {
				t.Errorf("DATABASE_URL = %q, want none", got)
			} else if got != tt.want {
				t.Errorf("DATABASE_URL = %q, want %q", got, tt.want)
			}
		})
	}
}

// A repository on this machine is fetched again only when its refs change.
func TestLocalRepositoryFetchedWhenItsRefsChange(t *testing.T) {
	testenv.LookPath(t, "git")
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin.git")
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@x", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", "--bare", "-b", "master", origin)
	work := filepath.Join(dir, "work")
	git("clone", "-q", origin, work)
	commit := func(msg string) {
		git("-C", work, "commit", "-q", "--allow-empty", "-m", msg)
		git("-C", work, "push", "-q", "origin", "HEAD:master")
	}
	commit("one")
	ctx := context.Background()
	repo := &GitRepo{Source: gitsource.New(origin, filepath.Join(dir, "mirror.git"))}
	head := func() string {
		t.Helper()
		if err := repo.Fetch(ctx); err != nil {
			t.Fatal(err)
		}
		h, err := repo.Head(ctx, "master")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first := head()
	fetched := repo.fetchedAt
	if head() != first || repo.fetchedAt != fetched {
		t.Errorf("an unchanged repository was fetched again")
	}
	commit("two")
	if second := head(); second == first || repo.fetchedAt == fetched {
		t.Errorf("after a push: head %s (was %s), fetched again: %v", second, first, repo.fetchedAt != fetched)
	}
	// A push webhook says the repository changed: it is fetched whatever
	// its refs look like.
	fetched = repo.fetchedAt
	repo.MarkStale()
	head()
	if repo.fetchedAt == fetched {
		t.Errorf("a repository marked stale was not fetched")
	}

	// Watched, the repository is fetched only when the watch marks it
	// stale: no stat of its refs, even after a push.
	repo.watched.Store(true)
	fetched = repo.fetchedAt
	commit("three")
	head()
	if repo.fetchedAt != fetched {
		t.Errorf("a watched repository was fetched before the watch said it changed")
	}
	repo.MarkStale()
	if third := head(); repo.fetchedAt == fetched || third == first {
		t.Errorf("a watched repository marked stale was not fetched")
	}
}
