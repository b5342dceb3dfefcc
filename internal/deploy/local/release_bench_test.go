//go:build integration

package local

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/deploytest"
)

// BenchmarkReleasePhase measures what a release phase adds to a release:
// "without" rolls 1 replica of the fixture out (v1 and v2 in turn);
// "with" runs the release command (`fixture release`, which writes a file
// to the data directory) from the new image first, then rolls it out;
// "command" runs the same command as a plain process of the host, from
// the same binary, which is the command's own time. The release phase
// costs with − without − command.
func BenchmarkReleasePhase(b *testing.B) {
	v1r, v2r, _ := fixtureReleases(b)
	rels := []deploytest.Release{v1r, v2r}
	spec := func(i int) deploy.Spec {
		s := baseSpec("bench")
		s.Replicas = 1
		r := rels[i%2]
		s.Image, s.Commit, s.Version = r.Image, r.Commit, r.Version
		return s
	}
	job := deploy.ReleaseJob{ID: "1", Command: []string{"/app/fixture", "release"}, Timeout: time.Minute}
	run := func(b *testing.B, phase bool) {
		be := newTestBackend(b, shortTempDir(b))
		ctx := context.Background()
		if err := be.Apply(ctx, spec(0)); err != nil {
			b.Fatal(err)
		}
		// Both images unpacked, the sandbox's ids given to their files.
		if err := be.RunRelease(ctx, spec(1), job, &deploy.TailBuffer{}); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := range b.N {
			s := spec(i + 1)
			if phase {
				if err := be.RunRelease(ctx, s, job, &deploy.TailBuffer{}); err != nil {
					b.Fatal(err)
				}
			}
			if err := be.Apply(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/release")
	}
	b.Run("without", func(b *testing.B) { run(b, false) })
	b.Run("with", func(b *testing.B) { run(b, true) })
	b.Run("command", func(b *testing.B) {
		dir := b.TempDir()
		bin := filepath.Join(dir, "fixture")
		if err := os.WriteFile(bin, fixtureBinary(b), 0o755); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			cmd := exec.Command(bin, "release")
			cmd.Env = []string{"DATA_DIR=" + dir, "FIXTURE_COMMIT=" + v2r.Commit}
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/release")
	})
}
