package apps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

// TestGC collects the images of an app against a real ledger and
// embedded registry: what ran, was released or is among the newest builds
// stays, whole and pullable; the rest goes, tags and blobs with it.
func TestGC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	emb, err := registry.NewEmbedded(ctx, filepath.Join(dir, "registry"), slog.New(slog.DiscardHandler))
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
	repo := l.Addr().String() + "/web"
	be, err := local.New(local.Options{Dir: filepath.Join(dir, "run", "web")})
	if err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.App = "web"
	cfg.GC.KeepBuilds = 2
	deps := store.Deployments().ForApp("web")
	a := &Apps{opts: Options{Embedded: emb}, log: slog.New(slog.DiscardHandler)}
	app := &App{Config: cfg, Registry: reg, Repository: repo, Backend: be, store: store, deps: deps, collect: a.collector()}

	// Eight builds, oldest first: what became of each.
	fates := []string{"prod-old", "never", "dev-failed", "prod-refused", "prod-now", "never", "dev-now", "newest"}
	digests := make([]string, len(fates))
	for i, fate := range fates {
		commit := strings.Repeat(fmt.Sprint(i), 40)
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, err := reg.Push(ctx, repo, img, commit[:7], "latest", "sha-"+commit)
		if err != nil {
			t.Fatal(err)
		}
		digests[i] = d.String()
		if _, err := store.CreateBuild(ctx, ledger.Build{App: "web", Commit: commit, State: ledger.BuildPushed, Image: repo, Digest: d.String()}); err != nil {
			t.Fatal(err)
		}
		var rows []ledger.Deployment
		switch fate {
		case "prod-old", "prod-now":
			rows = append(rows, ledger.Deployment{Env: "dev", Kind: ledger.KindDeploy, State: ledger.StateSucceeded},
				ledger.Deployment{Env: "prod", Kind: ledger.KindRelease, State: ledger.StateSucceeded, ReleaseName: fmt.Sprintf("RC2026010%d_1200", i)})
		case "dev-failed":
			rows = append(rows, ledger.Deployment{Env: "dev", Kind: ledger.KindDeploy, State: ledger.StateFailed})
		case "prod-refused":
			rows = append(rows, ledger.Deployment{Env: "dev", Kind: ledger.KindDeploy, State: ledger.StateFailed},
				ledger.Deployment{Env: "prod", Kind: ledger.KindRelease, State: ledger.StateRefused})
		case "dev-now":
			rows = append(rows, ledger.Deployment{Env: "dev", Kind: ledger.KindDeploy, State: ledger.StateSucceeded})
		}
		for _, r := range rows {
			r.Commit, r.Image, r.Digest = commit, repo+"@"+d.String(), d.String()
			if err := deps.Create(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
	}
	h := mustHash(t, digests[0])
	if err := reg.Tag(ctx, repo, "live", h); err != nil {
		t.Fatal(err)
	}

	dry, err := app.GC(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, it := range dry.Delete {
		planned = append(planned, it.Digest)
	}
	want := []string{digests[5], digests[3], digests[2], digests[1]} // newest first
	if diff := cmp.Diff(want, planned); diff != "" {
		t.Errorf("dry run plans to delete (-want +got):\n%s", diff)
	}
	if len(dry.Deleted) != 0 || dry.Blobs != 0 {
		t.Errorf("the dry run deleted %v and swept %d blobs", dry.Deleted, dry.Blobs)
	}
	for _, d := range want {
		if _, err := reg.Image(ctx, repo, mustHash(t, d)); err != nil {
			t.Errorf("the dry run deleted %s: %v", d, err)
		}
	}

	rep, err := app.GC(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, rep.Deleted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
	for i, d := range digests {
		_, err := reg.Image(ctx, repo, mustHash(t, d))
		gone := slices.Contains(want, d)
		switch {
		case gone && err == nil:
			t.Errorf("%s (%s) is still in the registry", fates[i], d)
		case !gone && err != nil:
			t.Errorf("%s (%s) was deleted: %v", fates[i], d, err)
		}
		commit := strings.Repeat(fmt.Sprint(i), 40)
		_, err = reg.Digest(ctx, repo, "sha-"+commit)
		if gone != errors.Is(err, registry.ErrNotFound) {
			t.Errorf("%s: tag sha-%s after the collection: %v", fates[i], commit[:7], err)
		}
	}
	// A second collection finds nothing more to delete.
	again, err := app.GC(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Delete) != 0 || len(again.Deleted) != 0 {
		t.Errorf("a second collection plans %d deletions and makes %d, want none", len(again.Delete), len(again.Deleted))
	}
	// The blobs went in the sweep only once old enough: these are new.
	if rep.Blobs != 0 || rep.KeptYoung == 0 {
		t.Errorf("swept %d blobs and kept %d young ones, want none swept (all younger than %s) and some kept", rep.Blobs, rep.KeptYoung, registry.SweepGrace)
	}
	if sw, err := emb.Sweep(ctx, 0); err != nil || sw.Blobs != 3*len(want) {
		t.Errorf("sweep without grace = %+v, %v; want %d blobs (manifest, config and layer of each image deleted)", sw, err, 3*len(want))
	}
	// History stays.
	if got, _ := store.ListBuilds(ctx, ledger.BuildFilter{App: "web"}); len(got) != len(fates) {
		t.Errorf("%d builds in the ledger after the collection, want %d", len(got), len(fates))
	}
}

func mustHash(t *testing.T, d string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(d)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
