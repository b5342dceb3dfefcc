//go:build integration

package local

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// TestReleasePhase runs release commands from a new image while the
// environment serves the old one: in the replicas' sandbox, with the
// environment's variables, secrets and data; a command that fails, and
// one that outlasts its timeout, report how they ended with their output,
// and the running version serves on.
func TestReleasePhase(t *testing.T) {
	t.Parallel()
	setOwnEnv(t, "SLIPWAY_TEST_RELEASE_KEY", "k-51f0")
	v1r, v2r, _ := fixtureReleases(t)
	dir := shortTempDir(t)
	b := newTestBackend(t, dir)
	ctx := t.Context()
	spec := baseSpec("rel")
	spec.Replicas = 1
	spec.Secrets = map[string]deploy.SecretRef{"API_KEY": {Env: "SLIPWAY_TEST_RELEASE_KEY"}}
	spec.Image, spec.Commit, spec.Version = v1r.Image, v1r.Commit, v1r.Version
	if err := b.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(ctx, "rel")
	if err != nil {
		t.Fatal(err)
	}
	next := spec
	next.Image, next.Commit, next.Version = v2r.Image, v2r.Commit, v2r.Version

	var out deploy.TailBuffer
	job := deploy.ReleaseJob{ID: "7", Command: []string{"/app/fixture", "release"}, Timeout: time.Minute}
	if err := b.RunRelease(ctx, next, job, &out); err != nil {
		t.Fatalf("release command: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	dataDir := hostDataDir(filepath.Join(dir, "envs", "rel"))
	wantDB := "sqlite:" + replicaDataDir(filepath.Join(dir, "envs", "rel"), st.Isolation) + "/fixture.db"
	for _, want := range []string{"fixture release of " + v2r.Commit, `PORT=""`, "DATABASE_URL=" + wantDB, "API_KEY=k-51f0", "fixture release: done"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if m := regexp.MustCompile(`pid=(\d+) `).FindStringSubmatch(got); st.Isolation == deploy.IsolationSandbox && (m == nil || len(m[1]) > 2) {
		t.Errorf("in a sandbox the command runs in a PID namespace of its own (a low pid):\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "released-"+v2r.Commit)); err != nil {
		t.Errorf("the command's file in the environment's data directory: %v", err)
	}

	// The timeout runs from the start of the sandbox, which on a loaded
	// machine has taken over 5 s to run the command: 15 s leaves room.
	for _, tc := range []struct {
		name, arg, reason, output string
		timeout                   time.Duration
	}{
		{"fails", "fail", "exited with status 3", "fixture release: failing on purpose", time.Minute},
		{"runs out of time", "sleep", "ran out of its 15s timeout, and was stopped", "fixture release: sleeping until stopped", 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out deploy.TailBuffer
			job := deploy.ReleaseJob{ID: "8", Command: []string{"/app/fixture", "release", tc.arg}, Timeout: tc.timeout}
			err := b.RunRelease(ctx, next, job, &out)
			var re *deploy.ReleaseError
			if !errors.As(err, &re) || re.Reason != tc.reason {
				t.Errorf("RunRelease: %v; want a release error: %s", err, tc.reason)
			}
			if !strings.Contains(out.String(), tc.output) {
				t.Errorf("output lacks %q:\n%s", tc.output, out.String())
			}
		})
	}
	st, err = b.Status(ctx, "rel")
	if err != nil || st.Commit != v1r.Commit || !st.Healthy {
		t.Errorf("after the release commands the environment serves %s (healthy %v, %v); want %s", st.Commit, st.Healthy, err, v1r.Version)
	}
}

// TestReleasePhaseNewEnvironment: a release command that fails in an
// environment that serves nothing yet leaves no supervisor behind.
func TestReleasePhaseNewEnvironment(t *testing.T) {
	t.Parallel()
	_, v2r, _ := fixtureReleases(t)
	dir := shortTempDir(t)
	b := newTestBackend(t, dir)
	spec := baseSpec("fresh")
	spec.Replicas = 1
	spec.Image, spec.Commit, spec.Version = v2r.Image, v2r.Commit, v2r.Version
	var out deploy.TailBuffer
	err := b.RunRelease(t.Context(), spec, deploy.ReleaseJob{ID: "1", Command: []string{"/app/fixture", "release", "fail"}, Timeout: time.Minute}, &out)
	if err == nil {
		t.Fatal("a failing release command succeeded")
	}
	if _, err := b.Status(t.Context(), "fresh"); !errors.Is(err, deploy.ErrNotDeployed) {
		t.Errorf("status after a failed release phase: %v; want not deployed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "envs", "fresh", socketName)); err == nil {
		t.Error("the supervisor started for the release phase still runs")
	}
	err = b.RunRelease(t.Context(), spec, deploy.ReleaseJob{ID: "2", Command: []string{"/app/no-such-program"}, Timeout: time.Minute}, &out)
	var re *deploy.ReleaseError
	if !errors.As(err, &re) || !strings.Contains(out.String()+re.Reason, "no-such-program") {
		t.Errorf("a command the image does not have: %v\n%s", err, out.String())
	}
}
