//go:build integration

package local

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/testenv"
)

// TestDiskFull fills the file system of the data directory while an
// environment runs under load: the rollout of a new image fails with an
// error that says the disk is full and what to do, leaving no half-unpacked
// image; the running replicas keep serving (not one request fails); and
// once space is freed the same rollout goes through.
func TestDiskFull(t *testing.T) {
	v1r, v2r, _ := fixtureReleases(t)
	dir := shortTempDir(t)
	testenv.SmallDisk(t, dir, "48m")
	b := newTestBackend(t, dir)
	ctx := t.Context()
	spec := func(r deploy.Spec, img, commit, version string) deploy.Spec {
		r.Image, r.Commit, r.Version = img, commit, version
		return r
	}
	base := baseSpec("full")
	base.Replicas = 2
	base.Strategy.ReadyTimeout = 30 * time.Second
	if err := b.Apply(ctx, spec(base, v1r.Image, v1r.Commit, v1r.Version)); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, st.URL+"/", 100)

	free := testenv.FillDisk(t, dir)
	before, start := l.counts(), time.Now()
	err = b.Apply(ctx, spec(base, v2r.Image, v2r.Commit, v2r.Version))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Apply on a full disk = %v, want ENOSPC", err)
	}
	for _, want := range []string{"deploy " + v2r.Version, "no space left on device", "free space on " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("Apply on a full disk: %v", err)
	time.Sleep(2 * time.Second) // the replicas keep serving on a full disk
	l.check(t, "rollout on a full disk", before, time.Since(start))
	st, err = b.Status(ctx, "full")
	if err != nil || st.Commit != v1r.Commit || st.Replicas.Ready != 2 {
		t.Errorf("status on a full disk = %+v, %v; want v1 with 2 ready replicas", st, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "images", ".unpack-*"))
	if len(leftovers) > 0 {
		t.Errorf("a half-unpacked image is left: %v", leftovers)
	}

	free()
	before, start = l.counts(), time.Now()
	if err := b.Apply(ctx, spec(base, v2r.Image, v2r.Commit, v2r.Version)); err != nil {
		t.Fatalf("Apply once space is freed: %v", err)
	}
	l.check(t, "rollout once space is freed", before, time.Since(start))
	st, err = b.Status(ctx, "full")
	if err != nil || st.Commit != v2r.Commit || st.Replicas.Ready != 2 {
		t.Errorf("status after the rollout = %+v, %v; want v2 with 2 ready replicas", st, err)
	}
	l.stop()
	l.check(t, "total", counts{}, time.Since(l.start))
}
