package apps

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/registry"
)

// TestWatchRetriesTagNotReadableYet: the embedded registry (as others)
// writes a tag's index link before its current link, so a listing can name
// a tag that does not resolve yet. The watch tries such a tag again at the
// next listing; an image it refuses is not tried again.
func TestWatchRetriesTagNotReadableYet(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	emb, err := registry.NewEmbedded(ctx, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go emb.Serve(l)
	defer emb.Close(ctx)
	reg := registry.NewClient()
	ci := l.Addr().String() + "/ci/web"

	// An image without a revision label: refused whenever it is read.
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := reg.Push(ctx, ci, img, "sha-nolabel")
	if err != nil {
		t.Fatal(err)
	}
	// sha-halfway as distribution leaves it between its two writes.
	tag := filepath.Join(dir, "docker/registry/v2/repositories/ci/web/_manifests/tags/sha-halfway")
	index := filepath.Join(tag, "index/sha256", d.Hex, "link")
	if err := os.MkdirAll(filepath.Dir(index), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(index, []byte(d.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.App = "web"
	cfg.Build.Kind = config.BuildImage
	cfg.Build.Image.Watch = ci
	log := slog.New(slog.DiscardHandler)
	app := &App{Config: cfg, builder: &build.Builder{Registry: reg, CIRegistry: reg, Repository: l.Addr().String() + "/web", Logger: log}}

	seen := map[string]bool{}
	app.importNewTags(ctx, seen, log)
	if !seen["sha-nolabel"] || seen["sha-halfway"] {
		t.Fatalf("after the first listing, seen = %v; want sha-nolabel (refused) and not sha-halfway (not readable yet)", seen)
	}
	// The push ends: the tag resolves, and is read (and refused: no label).
	current := filepath.Join(tag, "current", "link")
	if err := os.MkdirAll(filepath.Dir(current), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(current, []byte(d.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	app.importNewTags(ctx, seen, log)
	if !seen["sha-halfway"] {
		t.Errorf("after the push ended, seen = %v; want sha-halfway read", seen)
	}
}
