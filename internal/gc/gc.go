// Package gc decides which of an app's images slipway may delete: its
// retention rule, applied to what the ledger and the registry say. It does
// no I/O: internal/apps gathers the facts and acts on the plan (docs/gc.md).
//
// The rule keeps an image when
//
//   - an environment runs it, or a deployment of it is in flight;
//   - it was ever deployed to a controlled environment (every release, and
//     every release a rollback could return to), whatever came of it but a
//     refusal (a refused release never ran);
//   - an automatic environment ever ran it to the end (a succeeded
//     deployment): a rollback of that environment can return to it;
//   - it is one of the KeepBuilds newest builds of the app (about to be
//     deployed, or just built by hand);
//   - a registry tag slipway does not write per build points at it
//     (live, RC…, env-NAME, or any tag of someone else's).
//
// Every other image of a build of the app is deleted: built, then never
// run to the end anywhere (its rollout failed, a newer commit replaced it,
// it was built with `slipway build`). An image the ledger knows no build
// of is left alone.
package gc

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Build is a build of the app that pushed an image.
type Build struct {
	ID     int64
	Commit string
	Digest string
}

// Use is a deployment of an image to an environment.
type Use struct {
	Env string
	// Controlled: the environment takes releases only.
	Controlled bool
	Digest     string
	// State is the deployment's (ledger.DeploymentState): pending,
	// rolling, succeeded, failed, refused, rolled-back.
	State   string
	Release string
	// Current: the environment runs this deployment's image now (the
	// ledger's newest succeeded deployment of it).
	Current bool
}

// Facts are what the plan is made from.
type Facts struct {
	// Builds, newest first.
	Builds []Build
	Uses   []Use
	// Tags maps each tag of the app's repository to the digest it names:
	// the images the plan is about.
	Tags map[string]string
	// KeepBuilds is how many of the newest builds are kept (at least 1).
	KeepBuilds int
}

// Item is an image of the plan and why it is kept or deleted.
type Item struct {
	Digest  string   `json:"digest"`
	Commit  string   `json:"commit,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	Reasons []string `json:"reasons"`
}

// Plan is what to keep and what to delete.
type Plan struct {
	Keep   []Item `json:"keep"`
	Delete []Item `json:"delete"`
}

// buildTag is a tag the builder writes on every image: sha-COMMIT, the
// short commit, latest.
var buildTag = regexp.MustCompile(`^(sha-[0-9a-f]{40}|[0-9a-f]{7}|latest)$`)

// Make applies the rule to f.
func Make(f Facts) Plan {
	keep := f.KeepBuilds
	if keep < 1 {
		keep = 1
	}
	reasons := map[string][]string{}
	add := func(d, why string) {
		if d != "" && !slices.Contains(reasons[d], why) {
			reasons[d] = append(reasons[d], why)
		}
	}
	for _, u := range f.Uses {
		switch {
		case u.Current:
			add(u.Digest, "runs on "+u.Env)
		case u.State == "pending" || u.State == "rolling":
			add(u.Digest, "deployment in flight on "+u.Env)
		case u.Controlled && u.State != "refused":
			if u.Release != "" {
				add(u.Digest, "released to "+u.Env+" as "+u.Release)
			} else {
				add(u.Digest, "released to "+u.Env)
			}
		case !u.Controlled && u.State == "succeeded":
			add(u.Digest, "ran on "+u.Env+" (a rollback can return to it)")
		}
	}
	tagsOf := map[string][]string{}
	for tag, d := range f.Tags {
		tagsOf[d] = append(tagsOf[d], tag)
	}
	for d, tags := range tagsOf {
		slices.Sort(tags)
		for _, t := range tags {
			if !buildTag.MatchString(t) {
				add(d, "tagged "+t)
			}
		}
	}
	commitOf := map[string]string{}
	seen := 0
	for _, b := range f.Builds {
		if b.Digest == "" {
			continue
		}
		if _, dup := commitOf[b.Digest]; dup {
			continue
		}
		commitOf[b.Digest] = b.Commit
		seen++
		if seen <= keep {
			add(b.Digest, fmt.Sprintf("one of the %d newest builds (gc.keepBuilds)", keep))
		}
	}

	// The plan covers the images in the registry: a build whose image
	// is gone (collected before) has nothing left to keep or delete.
	var p Plan
	digests := map[string]bool{}
	for d := range tagsOf {
		digests[d] = true
	}
	// Newest build first, then images the ledger has no build of.
	order := make([]string, 0, len(digests))
	for _, b := range f.Builds {
		if digests[b.Digest] && !slices.Contains(order, b.Digest) {
			order = append(order, b.Digest)
		}
	}
	var rest []string
	for d := range digests {
		if !slices.Contains(order, d) {
			rest = append(rest, d)
		}
	}
	slices.Sort(rest)
	order = append(order, rest...)
	for _, d := range order {
		it := Item{Digest: d, Commit: commitOf[d], Tags: tagsOf[d]}
		switch {
		case len(reasons[d]) > 0:
			it.Reasons = reasons[d]
			p.Keep = append(p.Keep, it)
		case it.Commit == "":
			it.Reasons = []string{"no build of it in the ledger: not slipway's to delete"}
			p.Keep = append(p.Keep, it)
		default:
			it.Reasons = []string{neverRan(d, f.Uses)}
			p.Delete = append(p.Delete, it)
		}
	}
	return p
}

// neverRan says why d is not needed.
func neverRan(d string, uses []Use) string {
	var tried []string
	for _, u := range uses {
		if u.Digest == d && !slices.Contains(tried, u.Env+" "+u.State) {
			tried = append(tried, u.Env+" "+u.State)
		}
	}
	if len(tried) == 0 {
		return "never deployed, older than the newest builds"
	}
	return "never ran to the end anywhere (" + strings.Join(tried, ", ") + "), older than the newest builds"
}

// Report is what a collection of one app did (or, with DryRun, would do).
// Its JSON form is `slipway gc -o json`.
type Report struct {
	App    string `json:"app"`
	DryRun bool   `json:"dryRun"`
	Plan
	// Deleted are the manifests deleted from the registry.
	Deleted []string `json:"deleted"`
	// Blobs and BlobBytes are the registry's blobs swept (the embedded
	// registry only), KeptYoung the unreferenced ones left for being
	// younger than the grace period.
	Blobs     int   `json:"blobs"`
	BlobBytes int64 `json:"blobBytes"`
	KeptYoung int   `json:"keptYoung"`
	// Unpacked are the local runtime's unpacked images removed,
	// UnpackedBytes their size.
	Unpacked      []string `json:"unpacked"`
	UnpackedBytes int64    `json:"unpackedBytes"`
	// Errors are what failed; the rest went on.
	Errors []string `json:"errors,omitempty"`
}
