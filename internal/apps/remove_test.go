package apps

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

const twoApps = `
apps:
  - app: shop
    repo: {url: /nonexistent/shop.git}
    environments:
      - {name: dev, listen: "127.0.0.1:18081"}
      - {name: prod, listen: "127.0.0.1:18080"}
`

// An environment and an app that left the configuration are reported, and
// removed only on request, keeping or deleting their tags as asked.
func TestLeftoversAndRemove(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg, l, err := registry.Listen(ctx, "127.0.0.1:0", filepath.Join(dir, "registry"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	regAddr := l.Addr().String()

	for _, r := range []struct{ app, env string }{{"shop", "dev"}, {"shop", "qa"}, {"blog", "dev"}, {"blog", "prod"}} {
		d := &ledger.Deployment{Env: r.env, Kind: ledger.KindDeploy, Trigger: "test", Commit: strings.Repeat("a", 40), State: ledger.StateSucceeded}
		if err := store.Deployments().ForApp(r.app).Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// shop's qa image is tagged env-qa in the registry.
	client := registry.NewClient(registry.Insecure(true))
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err := client.Push(ctx, regAddr+"/shop", img, "env-qa")
	if err != nil {
		t.Fatal(err)
	}

	set, err := config.ParseSet("slipway.yaml", strings.NewReader(twoApps))
	if err != nil {
		t.Fatal(err)
	}
	all, err := Open(ctx, Options{Set: set, DataDir: dir, RegistryAddr: regAddr, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	left, err := all.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Leftover{{App: "blog"}, {App: "shop", Env: "qa"}}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("leftovers (-want +got):\n%s", diff)
	}

	for _, req := range []api.RemoveRequest{{App: "shop"}, {App: "shop", Env: "dev"}} {
		if _, err := all.Remove(ctx, req); !errors.Is(err, api.ErrStillConfigured) {
			t.Errorf("remove %+v: %v, want refused as still configured", req, err)
		}
	}
	if _, err := all.Remove(ctx, api.RemoveRequest{App: "nosuch"}); !errors.Is(err, api.ErrUnknownApp) {
		t.Errorf("remove of an unknown app: %v", err)
	}

	rep, err := all.Remove(ctx, api.RemoveRequest{App: "shop", Env: "qa", DeleteTags: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("removed: %q; kept: %q", rep.Removed, rep.Kept)
	if !strings.Contains(strings.Join(rep.Removed, "\n"), "shop:env-qa") || !strings.Contains(strings.Join(rep.Kept, "\n"), "data directory") {
		t.Errorf("report: removed %q, kept %q", rep.Removed, rep.Kept)
	}
	if _, err := client.Digest(ctx, regAddr+"/shop", "env-qa"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("env-qa after removal with --delete-tags: %v", err)
	}
	if _, err := client.Image(ctx, regAddr+"/shop", v1.Hash(h)); err != nil {
		t.Errorf("the image itself after its tag was removed: %v", err)
	}

	rep, err = all.Remove(ctx, api.RemoveRequest{App: "blog"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rep.Removed, "\n"); !strings.Contains(got, "dev of blog") || !strings.Contains(got, "prod of blog") {
		t.Errorf("removal of blog removed %q", rep.Removed)
	}
	left, err = all.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("leftovers after removal: %+v", left)
	}
	// A later deployment makes a removed environment a leftover again.
	d := &ledger.Deployment{Env: "qa", Kind: ledger.KindDeploy, Trigger: "test", Commit: strings.Repeat("b", 40), State: ledger.StateSucceeded}
	if err := store.Deployments().ForApp("shop").Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	if left, _ = all.Leftovers(ctx); len(left) != 1 || left[0] != (api.Leftover{App: "shop", Env: "qa"}) {
		t.Errorf("leftovers after a new deployment: %+v", left)
	}
}
