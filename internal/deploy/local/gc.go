package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// SupervisorGoroutines asks the supervisor of the environment directory
// envDir (DIR/envs/ENV) how many goroutines it runs: leak checks under
// load read it (test/soak).
func SupervisorGoroutines(ctx context.Context, envDir string) (int, error) {
	var out struct {
		Goroutines int `json:"goroutines"`
	}
	if err := newControl(filepath.Clean(envDir)).do(ctx, "GET", "/debug/goroutines", nil, &out); err != nil {
		return 0, err
	}
	return out.Goroutines, nil
}

// Pruned is what PruneImages removed, or would remove.
type Pruned struct {
	// Digests are the images whose unpacked files were removed.
	Digests []string `json:"digests"`
	Bytes   int64    `json:"bytes"`
	// Served are the images kept because an environment runs them.
	Served []string `json:"served"`
}

// PruneImages removes the unpacked files (DIR/images/sha256-HEX) of every
// image but those keep names, those an environment of the backend serves
// (its supervisor's spec, or the serving.json it left) and those a rollout
// of this backend is using. dryRun only says what it would remove. An
// image removed is unpacked again, from the registry, when it is deployed.
func (b *Backend) PruneImages(ctx context.Context, keep map[string]bool, dryRun bool) (Pruned, error) {
	var p Pruned
	served := b.servedImages(ctx)
	for d := range served {
		p.Served = append(p.Served, d)
	}
	slices.Sort(p.Served)
	ents, err := os.ReadDir(b.images.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("local runtime: list unpacked images: %w", err)
	}
	var doomed []string // renamed out of the way, removed below
	b.imagesMu.Lock()
	for _, e := range ents {
		hex, ok := strings.CutPrefix(e.Name(), "sha256-")
		if !ok || !e.IsDir() {
			continue
		}
		d := "sha256:" + hex
		if keep[d] || served[d] || b.imagesInUse[d] > 0 {
			continue
		}
		dir := filepath.Join(b.images.dir, e.Name())
		p.Digests = append(p.Digests, d)
		p.Bytes += diskUsage(dir)
		if dryRun {
			continue
		}
		trash := filepath.Join(b.images.dir, ".gc-"+e.Name())
		if err := os.Rename(dir, trash); err != nil {
			b.imagesMu.Unlock()
			return p, fmt.Errorf("local runtime: remove unpacked image %s: %w", d, err)
		}
		doomed = append(doomed, trash)
	}
	b.imagesMu.Unlock()
	var errs []error
	for _, dir := range doomed {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("local runtime: remove %s: %w", dir, err))
		}
	}
	return p, errors.Join(errs...)
}

// useImage marks image (REPO@DIGEST) as used by a rollout until the func
// it returns is called: PruneImages leaves it.
func (b *Backend) useImage(image string) func() {
	_, d, _ := strings.Cut(image, "@")
	b.imagesMu.Lock()
	if b.imagesInUse == nil {
		b.imagesInUse = map[string]int{}
	}
	b.imagesInUse[d]++
	b.imagesMu.Unlock()
	return func() {
		b.imagesMu.Lock()
		if b.imagesInUse[d]--; b.imagesInUse[d] <= 0 {
			delete(b.imagesInUse, d)
		}
		b.imagesMu.Unlock()
	}
}

// servedImages are the digests the backend's environments serve: what
// each supervisor answers it serves, and what each environment's
// serving.json says it last rolled out.
func (b *Backend) servedImages(ctx context.Context) map[string]bool {
	out := map[string]bool{}
	var dirs []string
	for _, root := range []string{filepath.Join(b.dir, "envs"), filepath.Join(b.legacy, "envs")} {
		if root == "envs" { // no legacy directory
			continue
		}
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(root, e.Name()))
			}
		}
	}
	add := func(spec deploy.Spec) {
		if _, d, ok := strings.Cut(spec.Image, "@"); ok {
			out[d] = true
		}
	}
	for _, dir := range dirs {
		var spec deploy.Spec
		if raw, err := os.ReadFile(filepath.Join(dir, "serving.json")); err == nil && json.Unmarshal(raw, &spec) == nil {
			add(spec)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		spec = deploy.Spec{}
		if newControl(dir).do(sctx, "GET", "/spec", nil, &spec) == nil {
			add(spec)
		}
		cancel()
	}
	return out
}

func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
