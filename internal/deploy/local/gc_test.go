package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/deploy"
)

// TestPruneImages removes the unpacked images nothing needs and keeps
// those kept by the caller, served by an environment (serving.json) or
// used by a rollout in progress.
func TestPruneImages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	for _, c := range []string{"a", "b", "c", "e", "f"} {
		root := filepath.Join(dir, "images", "sha256-"+strings.Repeat(c, 64), "rootfs")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "app"), make([]byte, 1000), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := filepath.Join(dir, "envs", "prod")
	os.MkdirAll(env, 0o755)
	raw, _ := json.Marshal(deploy.Spec{Image: "127.0.0.1:5000/app@" + d("b")})
	if err := os.WriteFile(filepath.Join(env, "serving.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	done := b.useImage("127.0.0.1:5000/app@" + d("e"))
	defer done()

	ctx := context.Background()
	keep := map[string]bool{d("c"): true}
	dry, err := b.PruneImages(ctx, keep, true)
	if err != nil {
		t.Fatal(err)
	}
	want := Pruned{Digests: []string{d("a"), d("f")}, Bytes: 2000, Served: []string{d("b")}}
	if diff := cmp.Diff(want, dry); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, "images", "sha256-"+strings.Repeat("a", 64))); err != nil {
		t.Errorf("the dry run removed an image: %v", err)
	}
	got, err := b.PruneImages(ctx, keep, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prune (-want +got):\n%s", diff)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "images"))
	var left []string
	for _, e := range ents {
		left = append(left, e.Name()[:8])
	}
	if diff := cmp.Diff([]string{"sha256-b", "sha256-c", "sha256-e"}, left); diff != "" {
		t.Errorf("left in images/ (-want +got):\n%s", diff)
	}
}
