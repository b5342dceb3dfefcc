package build

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/testenv"
)

// cpuTime is the CPU time (user + system) this process and its waited-for
// children have used: unlike wall time, it hardly depends on what else
// the machine is doing.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// BenchmarkBuildNewCommit measures `slipway build` of a new commit of the
// sample app against the app's own `go test ./...` + `go build` of another
// new commit, both with a warm Go build cache, and the image's size against
// the binary's. Each iteration makes two commits that change a package the
// tests and the binary use, so both sides recompile and retest the same
// amount.
//
//	go test -run '^$' -bench BuildNewCommit -benchtime 5x ./internal/build
func BenchmarkBuildNewCommit(b *testing.B) {
	ctx := context.Background()
	repo, _ := testenv.SampleAppRepo(b)
	e := newEnv(b, repo, startRegistry(b), "go test ./...")
	e.b.Progress = nil

	// The team's own checkout, where they would run go test and go build.
	own := filepath.Join(b.TempDir(), "own")
	testenv.Git(b, filepath.Dir(own), "clone", "-q", repo, own)
	var ownCPU, slipwayCPU time.Duration
	ownBuild := func() time.Duration {
		testenv.Git(b, own, "pull", "-q", "--ff-only")
		start, cpuStart := time.Now(), cpuTime()
		defer func() { ownCPU += cpuTime() - cpuStart }()
		for _, args := range [][]string{{"test", "./..."}, {"build", "-trimpath", "-o", filepath.Join(b.TempDir(), "app"), "."}} {
			cmd := exec.Command("go", args...)
			cmd.Dir = own
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("go %v: %v\n%s", args, err, out)
			}
		}
		return time.Since(start)
	}
	change := func(tag string) {
		commitFile(b, repo, "internal/birthday/zz_bench.go", fmt.Sprintf("package birthday\n\nvar benchStamp = %q\n", tag))
	}

	// Warm both caches.
	ownBuild()
	if _, err := e.b.Run(ctx, Request{}); err != nil {
		b.Fatal(err)
	}

	ownCPU = 0
	var ownTotal, slipwayTotal time.Duration
	var imageBytes, tarBytes, binaryBytes int64
	b.ResetTimer()
	var last Result
	for i := range b.N {
		// Alternate which side goes first, so that neither always meets
		// the machine in the same state.
		var res Result
		for _, side := range []string{"own", "slipway"} {
			if i%2 == 1 {
				side = map[string]string{"own": "slipway", "slipway": "own"}[side]
			}
			change(fmt.Sprintf("%s-%d-%d", side, i, time.Now().UnixNano()))
			if side == "own" {
				ownTotal += ownBuild()
				continue
			}
			start, cpuStart := time.Now(), cpuTime()
			r, err := e.b.Run(ctx, Request{})
			if err != nil {
				b.Fatal(err)
			}
			slipwayTotal += time.Since(start)
			slipwayCPU += cpuTime() - cpuStart
			if r.Skipped {
				b.Fatal("a new commit was not built")
			}
			res = r
		}

		last = res
	}
	b.StopTimer()
	// The sizes, from the last image (outside the timings: reading the
	// image back allocates a lot, and the next build would pay for its
	// garbage collection).
	res := last
	img, err := e.client.Image(ctx, e.repo, res.Digest)
	if err != nil {
		b.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		b.Fatal(err)
	}
	imageBytes = m.Config.Size
	tarBytes = 0
	for _, l := range m.Layers {
		imageBytes += l.Size
	}
	files := imageFiles(b, img)
	binaryBytes = int64(len(files["app/"+appName].body))
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, _ := l.Uncompressed()
		n, _ := copyCount(rc)
		rc.Close()
		tarBytes += n
	}
	n := float64(b.N)
	b.ReportMetric(ownTotal.Seconds()/n, "own-test+build-s/op")
	b.ReportMetric(slipwayTotal.Seconds()/n, "slipway-build-s/op")
	b.ReportMetric((slipwayTotal-ownTotal).Seconds()/n, "added-s/op")
	b.ReportMetric(ownCPU.Seconds()/n, "own-cpu-s/op")
	b.ReportMetric(slipwayCPU.Seconds()/n, "slipway-cpu-s/op")
	b.ReportMetric((slipwayCPU-ownCPU).Seconds()/n, "added-cpu-s/op")
	b.ReportMetric(float64(binaryBytes)/(1<<20), "binary-MiB")
	b.ReportMetric(float64(tarBytes)/(1<<20), "image-uncompressed-MiB")
	b.ReportMetric(float64(imageBytes)/(1<<20), "image-pushed-MiB")
}

// BenchmarkSteps measures what slipway adds around go test and go build,
// step by step, on the sample app: fetching and checking out a new commit,
// and turning a new binary into a pushed image (layers, digest, upload to
// the embedded registry, three tags).
//
//	go test -run '^$' -bench Steps -benchtime 5x ./internal/build
func BenchmarkSteps(b *testing.B) {
	ctx := context.Background()
	repo, _ := testenv.SampleAppRepo(b)
	e := newEnv(b, repo, startRegistry(b), "true")
	e.b.Progress = nil
	if _, err := e.b.Run(ctx, Request{}); err != nil { // warm: mirror, checkout, base layer blobs
		b.Fatal(err)
	}
	// The binary, built once.
	bin := filepath.Join(b.TempDir(), appName)
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("fetch+checkout", func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "src")
		var cpu time.Duration
		defer func() { b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op") }()
		for i := range b.N {
			b.StopTimer()
			commit := commitFile(b, repo, "zz_bench.txt", fmt.Sprint(i, time.Now().UnixNano()))
			b.StartTimer()
			c0 := cpuTime()
			if err := e.b.Source.Fetch(ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := e.b.Source.Resolve(ctx, "master"); err != nil {
				b.Fatal(err)
			}
			if err := e.b.Source.Checkout(ctx, commit, dir); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - c0
		}
	})
	b.Run("image+push", func(b *testing.B) {
		var cpu time.Duration
		defer func() { b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op") }()
		for i := range b.N {
			b.StopTimer()
			// A binary that differs from every earlier one, like a new build.
			p := filepath.Join(b.TempDir(), appName)
			if err := os.WriteFile(p, append(binary, fmt.Sprint(i, time.Now().UnixNano())...), 0o755); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			c0 := cpuTime()
			img, err := buildImage(p, imageSpec{App: appName, Commit: fmt.Sprintf("%040d", i), CommitTime: time.Now(), Source: repo, Port: 8080, Arch: "amd64"})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.client.Push(ctx, e.repo, img, fmt.Sprintf("s%d", i), "latest", fmt.Sprintf("sha-%d", i)); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - c0
		}
	})
}
