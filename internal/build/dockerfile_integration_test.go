//go:build integration

package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// dockerfileEnv is a builder of the Python test service (test/pyapp) from
// its Dockerfile, on the Debian base pushed to a registry of its own.
func dockerfileEnv(t testing.TB) (*env, string, string) {
	t.Helper()
	testenv.LookPath(t, "buildah")
	ctx := context.Background()
	regAddr := startRegistry(t)
	testenv.PushDebianPython(t, ctx, regAddr+"/pybase:bookworm")
	repo, commit := testenv.PyAppRepo(t)
	e := newEnv(t, repo, regAddr, "")
	e.b.Build.Kind = config.BuildDockerfile
	e.b.Build.Dockerfile, e.b.Build.Context = config.DefaultDockerfile, "."
	e.b.Build.Args = map[string]string{"BASE": regAddr + "/pybase:bookworm"}
	e.b.Build.Timeout = 15 * time.Minute
	e.b.InsecureRegistry = true
	t.Cleanup(e.b.Wait)
	return e, repo, commit
}

// TestDockerfileBuild builds the Python service with buildah: its RUN
// steps are its tests, the image is pushed with the tags and labels of a
// Go build, the digest recorded is the registry's, a second commit takes
// its unchanged steps from the cache, the test command runs in the image,
// and bad input is refused with the cause.
func TestDockerfileBuild(t *testing.T) {
	ctx := context.Background()
	e, repo, c0 := dockerfileEnv(t)

	res, err := e.b.Run(ctx, Request{Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Build.Commit != c0 || res.Build.State != ledger.BuildPushed {
		t.Fatalf("result = %+v, want commit %s pushed", res, c0)
	}
	checkPushed(t, e, c0, res)
	log := readLog(t, res.Build.LogPath)
	for _, want := range []string{"RUN python3 -m unittest -v test_app", "Ran 4 tests", "# built in", "# pushed "} {
		if !strings.Contains(log, want) {
			t.Errorf("build log lacks %q:\n%s", want, log)
		}
	}

	t.Run("the same commit again", func(t *testing.T) {
		res, err := e.b.Run(ctx, Request{Trigger: "test"})
		if err != nil || !res.Skipped {
			t.Fatalf("second build of %s: skipped=%v, %v; want skipped", c0[:7], res.Skipped, err)
		}
	})

	t.Run("a new commit, dependencies unchanged", func(t *testing.T) {
		c1 := commitFile(t, repo, "app.py", strings.Replace(readLog(t, filepath.Join(repo, "app.py")), `GREETING = "Hello from pyapp"`, `GREETING = "Hi from pyapp"`, 1))
		e.b.Test.Command = `python3 -c 'import app; print("commit", app.COMMIT)' | grep "commit ` + c1 + `"`
		defer func() { e.b.Test.Command = "" }()
		res, err := e.b.Run(ctx, Request{Trigger: "test"})
		if err != nil {
			t.Fatal(err)
		}
		checkPushed(t, e, c1, res)
		log := readLog(t, res.Build.LogPath)
		// The dependency step (RUN python3 -c …) is cached; the
		// code's test step is not.
		deps := strings.Index(log, "RUN python3 -c")
		if deps < 0 || !strings.HasPrefix(strings.TrimSpace(log[deps:][strings.Index(log[deps:], "\n"):]), "--> Using cache") {
			t.Errorf("the dependency step was not taken from the cache:\n%s", log)
		}
		if !strings.Contains(log, "Ran 4 tests") || !strings.Contains(log, "# tests passed in") {
			t.Errorf("the tests (RUN step, then the test command in the image) did not run:\n%s", log)
		}
	})

	failures := []struct {
		name    string
		change  func(t *testing.T)
		wantErr error
		reason  []string
	}{
		{"a failing test", func(t *testing.T) {
			commitFile(t, repo, "test_app.py", strings.Replace(readLog(t, filepath.Join(repo, "test_app.py")), "self.assertEqual(status, 200)", "self.assertEqual(status, 201)", 1))
		}, ErrDockerfile, []string{"Dockerfile build failed", "AssertionError: 200 != 201", "FAILED (failures=1)"}},
		{"a base image that cannot be pulled", func(t *testing.T) {
			e.b.Build.Args = map[string]string{"BASE": strings.Split(e.repo, "/")[0] + "/no-such-base:1"}
		}, ErrBaseImage, []string{"base image could not be pulled", "no-such-base"}},
		{"no Dockerfile", func(t *testing.T) {
			e.b.Build.Dockerfile = "Containerfile"
		}, ErrDockerfile, []string{"Dockerfile build failed: Containerfile is not in commit"}},
		{"a test command that fails in the image", func(t *testing.T) {
			e.b.Build.Dockerfile = config.DefaultDockerfile
			e.b.Build.Args = map[string]string{"BASE": strings.Split(e.repo, "/")[0] + "/pybase:bookworm"}
			testenv.Git(t, repo, "revert", "--no-edit", "HEAD")
			e.b.Test.Command = "python3 -c 'import sys; print(\"in the image\"); sys.exit(3)'"
		}, ErrTestsFailed, []string{"tests failed", "exit status 3", "in the image"}},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			tt.change(t)
			res, err := e.b.Run(ctx, Request{Trigger: "test"})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if res.Build.State != ledger.BuildFailed {
				t.Errorf("ledger state %s, want failed", res.Build.State)
			}
			for _, want := range tt.reason {
				if !strings.Contains(res.Build.Reason, want) {
					t.Errorf("reason lacks %q:\n%s", want, res.Build.Reason)
				}
			}
			if _, err := e.client.Digest(ctx, e.repo, "sha-"+res.Build.Commit); err == nil {
				t.Errorf("%s has an image after a failed build", res.Build.Commit[:7])
			}
		})
	}
}

// checkPushed checks that commit's image is in the registry under every
// tag, at the digest the ledger recorded, with the labels of a Go build's
// image and the commit in its environment (from SLIPWAY_COMMIT).
func checkPushed(t *testing.T, e *env, commit string, res Result) {
	t.Helper()
	ctx := context.Background()
	for _, tag := range []string{commit[:7], "latest", "sha-" + commit} {
		d, err := e.client.Digest(ctx, e.repo, tag)
		if err != nil || d != res.Digest || d.String() != res.Build.Digest {
			t.Errorf("tag %s: %v %v, want %s (the ledger's %s)", tag, d, err, res.Digest, res.Build.Digest)
		}
	}
	img, err := e.client.Image(ctx, e.repo, res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	want := imageLabels(appName, commit, e.b.Source.URL(), when)
	if diff := cmp.Diff(want, cf.Config.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if !cf.Created.Time.Equal(when) {
		t.Errorf("created %s, want the commit's time %s", cf.Created.Time, when)
	}
	if !slices.Contains(cf.Config.Env, "APP_COMMIT="+commit) {
		t.Errorf("env %v lacks APP_COMMIT=%s", cf.Config.Env, commit)
	}
	if diff := cmp.Diff([]string{"python3", "/app/app.py"}, cf.Config.Cmd); diff != "" {
		t.Errorf("cmd (-want +got):\n%s", diff)
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
