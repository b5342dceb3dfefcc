package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"
)

// TestDeleteAndSweep deletes one of two images sharing a layer, sweeps,
// and finds the other whole, the deleted one's own blobs gone, and a blob
// uploaded within the grace period kept.
func TestDeleteAndSweep(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := NewEmbedded(ctx, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Serve(l)
	t.Cleanup(func() { e.Close(ctx) })
	repo := l.Addr().String() + "/app"
	c := NewClient(fastRetry)

	base, err := random.Image(2048, 1)
	if err != nil {
		t.Fatal(err)
	}
	own := func() v1.Image {
		layer, err := random.Layer(4096, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, layer)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	keep, gone := own(), own()
	keepD, err := c.Push(ctx, repo, keep, "keep")
	if err != nil {
		t.Fatal(err)
	}
	goneD, err := c.Push(ctx, repo, gone, "gone", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, repo, goneD); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, repo, goneD); err != nil {
		t.Errorf("deleting a deleted manifest: %v, want nil", err)
	}
	for _, tag := range []string{"gone", "latest"} {
		if _, err := c.Digest(ctx, repo, tag); !errors.Is(err, ErrNotFound) {
			t.Errorf("tag %s after the delete: %v, want ErrNotFound", tag, err)
		}
	}

	// Within the grace period nothing goes.
	sw, err := e.Sweep(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Blobs != 0 || sw.Kept != 3 {
		t.Errorf("sweep with an hour's grace = %+v, want 0 blobs deleted and 3 kept (the deleted image's manifest, config and layer)", sw)
	}
	sw, err = e.Sweep(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Blobs != 3 || sw.Bytes == 0 {
		t.Errorf("sweep = %+v, want 3 blobs deleted (manifest, config, own layer)", sw)
	}
	goneLayers, _ := gone.Layers()
	ld, _ := goneLayers[1].Digest()
	if _, err := os.Stat(filepath.Join(dir, blobDataPath(digestOf(t, ld)))); !os.IsNotExist(err) {
		t.Errorf("the deleted image's own layer is still stored (%v)", err)
	}
	// The kept image pulls whole, shared layer included.
	img, err := c.Image(ctx, repo, keepD)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, layer := range layers {
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if _, err := c.Digest(ctx, repo, "keep"); err != nil {
		t.Errorf("tag keep after the sweep: %v", err)
	}
	// A push of the deleted image again works: its blobs are uploaded
	// anew.
	if _, err := c.Push(ctx, repo, gone, "again"); err != nil {
		t.Errorf("push the swept image again: %v", err)
	}
}

func digestOf(t *testing.T, h v1.Hash) digest.Digest {
	t.Helper()
	return digest.Digest(h.String())
}

// TestSweepWhilePushing sweeps over and over while images are pushed, and
// finds every pushed image whole: the blobs of a push in flight are young
// and kept, and writes wait while a sweep runs.
func TestSweepWhilePushing(t *testing.T) {
	ctx := context.Background()
	e, err := NewEmbedded(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Serve(l)
	t.Cleanup(func() { e.Close(ctx) })
	repo := l.Addr().String() + "/app"
	c := NewClient(fastRetry)

	stop := make(chan struct{})
	swept := make(chan error, 1)
	sweeps := 0
	go func() {
		for {
			select {
			case <-stop:
				swept <- nil
				return
			default:
			}
			if _, err := e.Sweep(ctx, SweepGrace); err != nil {
				swept <- err
				return
			}
			sweeps++
		}
	}()
	var pushed []v1.Hash
	for i := range 6 {
		img, err := random.Image(4096, 2)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Push(ctx, repo, img, fmt.Sprintf("t%d", i))
		if err != nil {
			t.Fatalf("push %d during sweeps: %v", i, err)
		}
		pushed = append(pushed, d)
	}
	close(stop)
	if err := <-swept; err != nil {
		t.Fatal(err)
	}
	for _, d := range pushed {
		img, err := c.Image(ctx, repo, d)
		if err != nil {
			t.Fatalf("image %s: %v", d, err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, layer := range layers {
			rc, err := layer.Compressed()
			if err != nil {
				t.Fatalf("image %s: layer: %v", d, err)
			}
			rc.Close()
		}
	}
	t.Logf("%d sweeps while 6 images were pushed", sweeps)
	if sweeps == 0 {
		t.Error("no sweep ran during the pushes")
	}
}
