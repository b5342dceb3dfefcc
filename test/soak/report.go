package soak

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Quarters returns the mean of each figure of proc over the first and the
// last quarter of the samples (at least one sample each).
func (r *Result) Quarters(proc string) (first, last Proc) {
	n := len(r.Samples)
	if n == 0 {
		return
	}
	q := max(1, n/4)
	return mean(r.Samples[:q], proc), mean(r.Samples[n-q:], proc)
}

func mean(ss []Sample, proc string) Proc {
	var m Proc
	for _, s := range ss {
		p := s.Procs[proc]
		m.RSSKiB += p.RSSKiB
		m.Goroutines += p.Goroutines
		m.FDs += p.FDs
		m.Threads += p.Threads
	}
	n := len(ss)
	return Proc{RSSKiB: m.RSSKiB / int64(n), Goroutines: m.Goroutines / n, FDs: m.FDs / n, Threads: m.Threads / n}
}

// Procs are the sampled processes' names, the controller first.
func (r *Result) Procs() []string {
	var names []string
	if len(r.Samples) > 0 {
		for k := range r.Samples[0].Procs {
			names = append(names, k)
		}
	}
	slices.Sort(names) // controller < supervisor …
	return names
}

// Report prints the figures.
func (r *Result) Report(w io.Writer) {
	fmt.Fprintf(w, "soak: %d cycles in %s (%d releases, %d rollbacks, %d scales, %d replica kills, %d commits whose replicas crash); load average %s at start, %s at end\n",
		r.Cycles, r.Elapsed.Round(1e9), r.Releases, r.Rollbacks, r.Scales, r.Kills, r.CrashingCommits, r.LoadAvg[0], r.LoadAvg[1])
	var total, failed int64
	for _, env := range Envs {
		l := r.Loads[env]
		if l == nil {
			continue
		}
		total += l.OK + l.Failed
		failed += l.Failed
		fmt.Fprintf(w, "load %s: %d requests, %d failed, %.0f req/s over %.0f s\n", env, l.OK+l.Failed, l.Failed, float64(l.OK+l.Failed)/l.Seconds, l.Seconds)
		for _, e := range l.FirstErrors {
			fmt.Fprintf(w, "  failed: %s\n", e)
		}
	}
	fmt.Fprintf(w, "requests: %d, failed: %d\n", total, failed)
	fmt.Fprintf(w, "%-16s %22s %22s %16s %16s\n", "process", "RSS MiB first→last", "goroutines first→last", "fds first→last", "threads")
	for _, p := range r.Procs() {
		f, l := r.Quarters(p)
		fmt.Fprintf(w, "%-16s %10.1f → %-9.1f %10d → %-9d %7d → %-6d %7d → %-6d\n", p,
			float64(f.RSSKiB)/1024, float64(l.RSSKiB)/1024, f.Goroutines, l.Goroutines, f.FDs, l.FDs, f.Threads, l.Threads)
	}
	row := func(name string, b, a Sizes) {
		fmt.Fprintf(w, "%-8s registry %.1f MiB (%d manifests, %d blobs), ledger %.2f MiB (%d builds, %d deployments), unpacked images %.1f MiB (%d), work %.1f MiB\n",
			name, mib(b.RegistryBytes), b.Manifests, b.Blobs, mib(b.LedgerBytes), b.Builds, b.Deployments, mib(b.ImagesBytes), b.UnpackedImages, mib(b.WorkBytes))
	}
	row("before", r.Before, r.Before)
	row("after", r.After, r.After)
	if r.GCError != "" {
		fmt.Fprintf(w, "slipway gc failed: %s\n", r.GCError)
	}
	fmt.Fprintf(w, "collections logged: %d\n", len(r.GCLines))
	for _, l := range r.GCLines[max(0, len(r.GCLines)-3):] {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(l))
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
