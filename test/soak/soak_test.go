//go:build integration

package soak

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/gc"
	"slipway.dev/slipway/internal/testenv"
)

// TestSoak runs 20 cycles (SLIPWAY_SOAK_CYCLES) of push → dev → release →
// rollback under 200 requests a second to each environment, with a scale
// up and down and a replica killed every 10 cycles and a commit whose
// replicas crash every 5, and the image collection every minute (more
// cycles, when they were fast, until it ran once). Not one
// request may fail; the collection keeps every image an environment ran
// and deletes the crashing commits' images once they are not among the
// newest builds; the controller's and supervisors' goroutines and file
// descriptors do not grow from the first quarter of the cycles to the last
// beyond a generous bound. The long run is bench/soak.
func TestSoak(t *testing.T) {
	testenv.LookPath(t, "git")
	cycles := 20
	if v := os.Getenv("SLIPWAY_SOAK_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("SLIPWAY_SOAK_CYCLES=%q: give a number of cycles, at least 10", v)
		}
		cycles = n
	}
	dir, err := os.MkdirTemp("", "soak") // short: unix sockets live below it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	module, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	const keepBuilds = 2
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Hour)
	defer cancel()
	res, err := Run(ctx, Options{Dir: dir, Module: module, Cycles: cycles, Rate: 200, KeepBuilds: keepBuilds, GCInterval: time.Minute, UntilCollected: true, Logf: t.Logf})
	if res != nil {
		var b strings.Builder
		res.Report(&b)
		t.Logf("\n%s", b.String())
	}
	if err != nil {
		if raw, rerr := os.ReadFile(filepath.Join(dir, "serve.log")); rerr == nil {
			t.Logf("serve.log (end):\n%s", tail(string(raw), 60))
		}
		t.Fatal(err)
	}

	var total int64
	for _, env := range Envs {
		l := res.Loads[env]
		total += l.OK
		if l.Failed > 0 {
			t.Errorf("%s: %d of %d requests failed; first: %v", env, l.Failed, l.OK+l.Failed, l.FirstErrors)
		}
		if l.OK == 0 {
			t.Errorf("%s: no request answered", env)
		}
	}

	if res.GCError != "" {
		t.Fatalf("slipway gc: %s", res.GCError)
	}
	if len(res.GCLines) < 2 { // the periodic ones and the last, on request
		t.Errorf("the controller logged %d collections, want the periodic ones too:\n%v", len(res.GCLines), res.GCLines)
	}
	var rep gc.Report
	if err := json.Unmarshal(res.GC, &rep); err != nil {
		t.Fatalf("slipway gc -o json: %v\n%s", err, res.GC)
	}
	kept := map[string]bool{}
	for _, it := range rep.Keep {
		kept[it.Digest] = true
	}
	for d := range res.Ran {
		if !kept[d] {
			t.Errorf("image %s ran in an environment but the collection does not keep it", d)
		}
	}
	if len(rep.Delete) > 0 && len(rep.Deleted) != len(rep.Delete) {
		t.Errorf("the last collection planned %d deletions and made %d: %v", len(rep.Delete), len(rep.Deleted), rep.Errors)
	}
	// The crashing commits' images are gone, but those among the newest
	// builds.
	gone := 0
	for commit, d := range res.NeverDeployed {
		if kept[d] {
			if !slices.ContainsFunc(rep.Keep, func(it gc.Item) bool {
				return it.Digest == d && slices.Contains(it.Reasons, "one of the 2 newest builds (gc.keepBuilds)")
			}) {
				t.Errorf("the image of %s, which never ran, is kept: %v", commit[:7], rep.Keep)
			}
			continue
		}
		gone++
	}
	if gone == 0 {
		t.Errorf("none of the %d images that never ran was collected", len(res.NeverDeployed))
	}
	if res.After.Manifests > len(rep.Keep) {
		t.Errorf("the registry holds %d manifests of the app after the collection, which keeps %d", res.After.Manifests, len(rep.Keep))
	}
	if res.After.UnpackedImages > 2*len(Envs)+1 {
		t.Errorf("%d unpacked images are left, want at most what each environment runs and ran before", res.After.UnpackedImages)
	}

	// No leak: a generous bound on goroutines and descriptors, first
	// quarter of the cycles against the last.
	for _, p := range res.Procs() {
		first, last := res.Quarters(p)
		if last.Goroutines > first.Goroutines*3/2+20 {
			t.Errorf("%s: goroutines grew from %d (first quarter) to %d (last quarter)", p, first.Goroutines, last.Goroutines)
		}
		if last.FDs > first.FDs*3/2+20 {
			t.Errorf("%s: open descriptors grew from %d (first quarter) to %d (last quarter)", p, first.FDs, last.FDs)
		}
	}
	t.Logf("%d requests answered, none failed; %d images that never ran collected", total, gone)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
