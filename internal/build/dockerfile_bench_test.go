//go:build integration

package build

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDockerfileNewCommit measures slipway's build of a new commit of
// the Python test service whose dependencies are unchanged (checkout,
// buildah build with its cache, push, labels, tags, ledger) against
// buildah's own build of another such commit: the same `buildah build`
// command on the same storage, in the repository's working tree. The
// removal of earlier builds' layers that follows each slipway build runs
// after the build has returned and is waited for outside both timings;
// the bare build's are removed the same way, so that each build of either
// side starts from the same storage.
// Wall and CPU time (this process and its children) are reported.
//
// Each iteration is SLIPWAY_BENCH_ROUNDS rounds (default 3): run it with
// -benchtime 1x, or the first build, minutes long, is made twice.
//
//	go test -tags integration -run '^$' -bench DockerfileNewCommit -benchtime 1x ./internal/build
func BenchmarkDockerfileNewCommit(b *testing.B) {
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("SLIPWAY_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	ctx := context.Background()
	e, repo, _ := dockerfileEnv(b)
	e.b.Progress = nil
	change := func(tag string) string {
		return commitFile(b, repo, "version.txt", tag+"\n")
	}
	// Warm the cache: the base is pulled, the dependency step made.
	if _, err := e.b.Run(ctx, Request{}); err != nil {
		b.Fatal(err)
	}
	e.b.Wait()
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var slipwayWall, slipwayCPU, ownWall, ownCPU time.Duration
	b.ResetTimer()
	for i := range b.N * rounds {
		// Alternate which side goes first.
		sides := []string{"own", "slipway"}
		if i%2 == 1 {
			sides = []string{"slipway", "own"}
		}
		for _, side := range sides {
			commit := change(fmt.Sprintf("%s-%d-%d", side, i, time.Now().UnixNano()))
			if side == "own" {
				w, c := bareBuildah(b, e, repo, commit, when)
				b.Logf("round %d: buildah %s", i, w.Round(10*time.Millisecond))
				b.StopTimer()
				pruneBuildah(b, e) // as slipway does after its builds
				b.StartTimer()
				ownWall += w
				ownCPU += c
				continue
			}
			start, cpuStart := time.Now(), cpuTime()
			res, err := e.b.Run(ctx, Request{})
			slipwayWall += time.Since(start)
			slipwayCPU += cpuTime() - cpuStart
			b.Logf("round %d: slipway %s", i, time.Since(start).Round(10*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			if res.Skipped {
				b.Fatal("a new commit was not built")
			}
			b.StopTimer()
			e.b.Wait()
			b.StartTimer()
		}
	}
	b.StopTimer()
	n := float64(b.N * rounds)
	b.ReportMetric(slipwayWall.Seconds()/n, "s-slipway/op")
	b.ReportMetric(ownWall.Seconds()/n, "s-buildah/op")
	b.ReportMetric((slipwayWall-ownWall).Seconds()/n, "s-overhead/op")
	b.ReportMetric(slipwayCPU.Seconds()/n, "cpu-s-slipway/op")
	b.ReportMetric(ownCPU.Seconds()/n, "cpu-s-buildah/op")
}

// pruneBuildah removes the images of the bare build, as slipway removes
// those of its earlier builds, so that each build starts from the same
// storage.
func pruneBuildah(b *testing.B, e *env) {
	b.Helper()
	h := e.b.buildah()
	cmd := exec.Command(h.bin(), append(h.global(), "rmi", "--prune")...)
	cmd.Env = h.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("buildah rmi --prune: %v\n%s", err, out)
	}
}

// bareBuildah runs, in dir, the buildah build slipway would run for
// commit, and returns how long it took (wall and CPU).
func bareBuildah(b *testing.B, e *env, dir, commit string, when time.Time) (time.Duration, time.Duration) {
	b.Helper()
	h := e.b.buildah()
	if err := h.prepare(); err != nil {
		b.Fatal(err)
	}
	args := map[string]string{ArgCommit: commit}
	for k, v := range e.b.Build.Args {
		args[k] = v
	}
	spec := BuildSpec{Context: dir, Dockerfile: filepath.Join(dir, "Dockerfile"), Args: args, Timestamp: when,
		IIDFile: filepath.Join(b.TempDir(), "iid")}
	start, cpuStart := time.Now(), cpuTime()
	cmd := exec.CommandContext(context.Background(), h.bin(), h.BuildArgs(spec)...)
	cmd.Dir, cmd.Env = dir, h.env()
	out, err := cmd.CombinedOutput()
	wall, cpu := time.Since(start), cpuTime()-cpuStart
	if err != nil {
		b.Fatalf("buildah build: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Using cache") {
		b.Fatalf("buildah's own build used no cache:\n%s", out)
	}
	return wall, cpu
}
