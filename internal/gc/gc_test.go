package gc

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func d(n int) string { return "sha256:" + strings.Repeat(string(rune('a'+n)), 64) }

func c(n int) string { return strings.Repeat(string(rune('0'+n)), 40) }

func TestMake(t *testing.T) {
	f := Facts{
		KeepBuilds: 2,
		// Newest first: 9 and 8 are the newest builds.
		Builds: []Build{
			{ID: 9, Commit: c(9), Digest: d(9)},
			{ID: 8, Commit: c(8), Digest: d(8)},
			{ID: 7, Commit: c(7), Digest: d(7)}, // its dev rollout failed
			{ID: 6, Commit: c(6), Digest: d(6)}, // ran on dev, released, rolled back from
			{ID: 5, Commit: c(5), Digest: d(5)}, // prod runs it
			{ID: 4, Commit: c(4), Digest: d(4)}, // never deployed (superseded)
			{ID: 3, Commit: c(3), Digest: d(3)}, // release refused
			{ID: 2, Commit: c(2), Digest: d(2)}, // tagged by someone else
			{ID: 1, Commit: c(1), Digest: ""},   // failed build: no image
		},
		Uses: []Use{
			{Env: "dev", Digest: d(7), State: "failed"},
			{Env: "dev", Digest: d(6), State: "succeeded", Current: true},
			{Env: "prod", Controlled: true, Digest: d(6), State: "succeeded", Release: "RC20260101_1200"},
			{Env: "prod", Controlled: true, Digest: d(5), State: "succeeded", Release: "RC20260101_1100", Current: true},
			{Env: "prod", Controlled: true, Digest: d(3), State: "refused"},
			{Env: "dev", Digest: d(3), State: "failed"},
		},
		Tags: map[string]string{
			"latest": d(9), "sha-" + c(9): d(9), c(9)[:7]: d(9),
			"sha-" + c(8): d(8), "sha-" + c(7): d(7), "sha-" + c(6): d(6), "sha-" + c(5): d(5),
			"sha-" + c(4): d(4), "sha-" + c(3): d(3), "sha-" + c(2): d(2),
			"keepme": d(2),
			"other":  d(10), // no build
		},
	}
	// Build 3's image was collected before: the registry no longer has
	// it, and the plan has nothing to say about it.
	delete(f.Tags, "sha-"+c(3))
	p := Make(f)
	for _, it := range append(p.Keep, p.Delete...) {
		if it.Digest == d(3) {
			t.Errorf("the plan names an image the registry does not have: %+v", it)
		}
	}
	f.Tags["sha-"+c(3)] = d(3)
	p = Make(f)
	got := map[string][]string{}
	for _, it := range p.Keep {
		got["keep "+it.Digest[7:8]] = it.Reasons
	}
	for _, it := range p.Delete {
		got["delete "+it.Digest[7:8]] = it.Reasons
	}
	want := map[string][]string{
		"keep j":   {"one of the 2 newest builds (gc.keepBuilds)"},
		"keep i":   {"one of the 2 newest builds (gc.keepBuilds)"},
		"delete h": {"never ran to the end anywhere (dev failed), older than the newest builds"},
		"keep g":   {"runs on dev", "released to prod as RC20260101_1200"},
		"keep f":   {"runs on prod"},
		"delete e": {"never deployed, older than the newest builds"},
		"delete d": {"never ran to the end anywhere (prod refused, dev failed), older than the newest builds"},
		"keep c":   {"tagged keepme"},
		"keep k":   {"tagged other"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	// Newest build first.
	if p.Keep[0].Digest != d(9) || p.Delete[0].Digest != d(7) {
		t.Errorf("order: keep starts with %s, delete with %s", p.Keep[0].Digest, p.Delete[0].Digest)
	}
}
