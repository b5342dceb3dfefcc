//go:build bench

// Package soak runs the long soak of test/soak: 200 cycles of push → dev →
// release → rollback of the sample service with the real `slipway serve`,
// scale up and down and a replica killed every 10 cycles, while each
// environment takes 200 requests a second, and prints the controller's and
// supervisors' memory, goroutines and descriptors of the first and last
// quarter, the requests answered and failed, and the sizes of the
// registry and ledger before and after (docs/benchmarks.md):
//
//	go test -tags bench -run TestSoak -timeout 6h -v ./bench/soak -cycles 200
package soak

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"slipway.dev/slipway/test/soak"
)

var (
	cycles     = flag.Int("cycles", 200, "cycles of push → dev → release → rollback")
	rate       = flag.Int("rate", 200, "requests per second to each environment")
	keepBuilds = flag.Int("keep-builds", 5, "gc.keepBuilds")
	gcEvery    = flag.Duration("gc-interval", 2*time.Minute, "gc.interval")
	keep       = flag.Bool("keep", false, "keep the workspace")
	until      = flag.Duration("for", 0, "stop after the cycle running after this long (0: run every cycle)")
)

func TestSoak(t *testing.T) {
	dir, err := os.MkdirTemp("", "soak")
	if err != nil {
		t.Fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	module, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var end time.Time
	if *until > 0 {
		end = time.Now().Add(*until)
	}
	res, err := soak.Run(t.Context(), soak.Options{
		Until: end,
		Dir:   dir, Module: module, Cycles: *cycles, Rate: *rate, KeepBuilds: *keepBuilds, GCInterval: *gcEvery,
		Logf: t.Logf,
	})
	if res != nil {
		res.Report(os.Stdout)
	}
	if err != nil {
		t.Fatal(err)
	}
	for env, l := range res.Loads {
		if l.Failed > 0 {
			t.Errorf("%s: %d requests failed: %v", env, l.Failed, l.FirstErrors)
		}
	}
}
