//go:build integration

package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// TestReleaseRunOnce: a run of a release command that succeeded is not run
// again when the controller asks again under the same number (it was
// stopped before recording the end); another number, another image, or a
// run that failed is run.
func TestReleaseRunOnce(t *testing.T) {
	t.Parallel()
	v1r, v2r, _ := fixtureReleases(t)
	dir := shortTempDir(t)
	b := newTestBackend(t, dir)
	ctx := t.Context()
	spec := baseSpec("once")
	spec.Replicas = 1
	spec.Image, spec.Commit, spec.Version = v1r.Image, v1r.Commit, v1r.Version
	if err := b.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	next := spec
	next.Image, next.Commit, next.Version = v2r.Image, v2r.Commit, v2r.Version
	const again = "had succeeded already"
	run := func(spec deploy.Spec, id string, args ...string) (string, error) {
		t.Helper()
		var out deploy.TailBuffer
		job := deploy.ReleaseJob{ID: id, Command: append([]string{"/app/fixture", "release"}, args...), Timeout: time.Minute}
		err := b.RunRelease(ctx, spec, job, &out)
		return out.String(), err
	}
	marker := filepath.Join(hostDataDir(filepath.Join(dir, "envs", "once")), "released-"+v2r.Commit)

	out, err := run(next, "12")
	if err != nil || strings.Contains(out, again) {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatalf("the command's file: %v", err)
	}
	out, err = run(next, "12")
	if err != nil || !strings.Contains(out, again) || !strings.Contains(out, "fixture release: done") {
		t.Errorf("the same run asked again: %v; want its first output and that it was not run again:\n%s", err, out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the same run asked again ran the command a second time")
	}

	for _, tc := range []struct {
		name string
		spec deploy.Spec
		id   string
	}{{"another run", next, "13"}, {"another image", spec, "12"}} {
		if out, err := run(tc.spec, tc.id); err != nil || strings.Contains(out, again) {
			t.Errorf("%s: %v; want the command run:\n%s", tc.name, err, out)
		}
	}

	// A run that failed is run again.
	for range 2 {
		out, err := run(next, "14", "fail")
		var re *deploy.ReleaseError
		if !errors.As(err, &re) || strings.Contains(out, again) {
			t.Errorf("a failing run: %v; want it run and failed each time:\n%s", err, out)
		}
	}
}
