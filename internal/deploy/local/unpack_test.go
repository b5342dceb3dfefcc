package local

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"slipway.dev/slipway/internal/deploy"
)

func TestUnpackRefusesEscapes(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"absolute path", []tarEntry{{hdr: tar.Header{Name: "/etc/evil"}, body: []byte("x")}}, "absolute path"},
		{"dot-dot", []tarEntry{{hdr: tar.Header{Name: "../evil"}, body: []byte("x")}}, "climbs out"},
		{"dot-dot inside", []tarEntry{{hdr: tar.Header{Name: "a/../../evil"}, body: []byte("x")}}, "climbs out"},
		{"symlink out", []tarEntry{{hdr: tar.Header{Name: "a/link", Typeflag: tar.TypeSymlink, Linkname: "../../outside"}}}, "outside the image root"},
		{"hard link out", []tarEntry{{hdr: tar.Header{Name: "link", Typeflag: tar.TypeLink, Linkname: "../outside"}}}, "climbs out"},
		{"device node", []tarEntry{{hdr: tar.Header{Name: "usr/kmem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 2}}}, "device node"},
		{"write through an absolute symlink", []tarEntry{
			{hdr: tar.Header{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"}},
			{hdr: tar.Header{Name: "etc/evil"}, body: []byte("x")},
		}, "escapes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			rootfs := filepath.Join(parent, "rootfs")
			img, err := mutate.AppendLayers(empty.Image, tarLayer(t, tt.entries...))
			if err != nil {
				t.Fatal(err)
			}
			err = unpackLayers(t.Context(), img, rootfs)
			if !errors.Is(err, ErrUnsafeImage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("unpack error = %v, want ErrUnsafeImage saying %q", err, tt.want)
			}
			if _, err := os.Lstat(filepath.Join(parent, "evil")); err == nil {
				t.Errorf("a file was written outside the root")
			}
		})
	}
}

// An image that unpacks far beyond its compressed size is refused before it
// fills the disk: a file of zeros that compresses to almost nothing, a
// sparse file, too many entries. Device nodes under /dev are skipped.
func TestUnpackLimits(t *testing.T) {
	defer func(l limits) { unpackLimits = l }(unpackLimits)
	unpackLimits = limits{bytes: 1 << 20, entries: 50}

	zeros := make([]byte, 2<<20)
	sparse := gnuSparseTar("huge", 4<<30)
	many := make([]tarEntry, 60)
	for i := range many {
		many[i] = tarEntry{hdr: tar.Header{Name: fmt.Sprintf("f%d", i)}, body: []byte("x")}
	}
	tests := []struct {
		name  string
		layer v1.Layer
		want  string
	}{
		{"decompression bomb", tarLayer(t, tarEntry{hdr: tar.Header{Name: "zeros"}, body: zeros}), "beyond the image's limit"},
		{"many entries", tarLayer(t, many...), "more than 50 entries"},
		{"sparse file", rawLayer(t, sparse), "beyond the image's limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, tt.layer)
			if err != nil {
				t.Fatal(err)
			}
			err = unpackLayers(t.Context(), img, filepath.Join(t.TempDir(), "rootfs"))
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("unpack error = %v, want ErrTooLarge saying %q", err, tt.want)
			}
		})
	}

	// Within the limits, with a device under /dev: unpacked, the device
	// skipped.
	img, err := mutate.AppendLayers(empty.Image, tarLayer(t,
		tarEntry{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}},
		tarEntry{hdr: tar.Header{Name: "app"}, body: zeros[:1<<19]}))
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := unpackLayers(t.Context(), img, rootfs); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(rootfs, "dev", "null")); err == nil {
		t.Errorf("dev/null was made: %v", fi.Mode())
	}
}

// gnuSparseTar is a tar of one old-GNU sparse file (type 'S') of size bytes (< 8 GiB)
// with no data at all, which archive/tar's writer cannot make.
func gnuSparseTar(name string, size int64) []byte {
	h := make([]byte, 512)
	octal := func(off, n int, v int64) { copy(h[off:off+n], fmt.Sprintf("%0*o", n-1, v)) }
	copy(h, name)
	octal(100, 8, 0o644)
	octal(108, 8, 0)
	octal(116, 8, 0)
	octal(124, 12, 0) // no data in the archive
	octal(136, 12, 0)
	h[156] = 'S'
	copy(h[257:], "ustar  \x00")
	octal(386, 12, size) // one hole up to the end: the map's last entry is (size, 0)
	octal(398, 12, 0)
	octal(483, 12, size)
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return append(h, make([]byte, 1024)...) // two zero blocks end the archive
}

// rawLayer is a layer of the tar bytes b.
func rawLayer(t *testing.T, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestUnpackLayersAndWhiteouts(t *testing.T) {
	lower := tarLayer(t,
		tarEntry{hdr: tar.Header{Name: "./bin/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarEntry{hdr: tar.Header{Name: "./bin/app", Mode: 0o755}, body: []byte("v1")},
		tarEntry{hdr: tar.Header{Name: "./bin/sh", Typeflag: tar.TypeSymlink, Linkname: "app"}},
		tarEntry{hdr: tar.Header{Name: "gone.txt"}, body: []byte("x")},
		tarEntry{hdr: tar.Header{Name: "opaque/old.txt"}, body: []byte("x")},
		tarEntry{hdr: tar.Header{Name: "lib/abs", Typeflag: tar.TypeSymlink, Linkname: "/bin/app"}},
	)
	upper := tarLayer(t,
		tarEntry{hdr: tar.Header{Name: "bin/app", Mode: 0o755}, body: []byte("v2")},
		tarEntry{hdr: tar.Header{Name: "bin/hard", Typeflag: tar.TypeLink, Linkname: "bin/app"}},
		tarEntry{hdr: tar.Header{Name: ".wh.gone.txt"}},
		tarEntry{hdr: tar.Header{Name: "opaque/.wh..wh..opq"}},
		tarEntry{hdr: tar.Header{Name: "opaque/new.txt"}, body: []byte("y")},
	)
	img, err := mutate.AppendLayers(empty.Image, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := unpackLayers(t.Context(), img, rootfs); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(rootfs, p))
		if err != nil {
			return "missing"
		}
		return string(b)
	}
	for p, want := range map[string]string{
		"bin/app": "v2", "bin/sh": "v2", "bin/hard": "v2", "gone.txt": "missing",
		"opaque/old.txt": "missing", "opaque/new.txt": "y",
	} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "bin/app")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/app mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "lib/abs")); err != nil || target != "/bin/app" {
		t.Errorf("lib/abs -> %q, %v; want /bin/app (resolved inside the replica's root)", target, err)
	}
}

func TestDeployRefusesImageWithEscapingEntry(t *testing.T) {
	t.Parallel()
	reg := newTestRegistry(t)
	evil := tarLayer(t, tarEntry{hdr: tar.Header{Name: "../../../../tmp/slipway-escape"}, body: []byte("x")})
	c := strings.Repeat("3c", 20)
	ref := reg.push(t, "evil", fixtureImage(t, c, evil))
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("evil")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = ref, c, "evil", 1
	err := b.Apply(t.Context(), spec)
	if !errors.Is(err, ErrUnsafeImage) || !strings.Contains(err.Error(), "climbs out of the image root") {
		t.Fatalf("Apply(image with ../ entry) error = %v, want ErrUnsafeImage", err)
	}
	t.Log(err)
	if _, err := b.Status(t.Context(), "evil"); !errors.Is(err, deploy.ErrNotDeployed) {
		t.Errorf("after a refused image, Status error = %v, want ErrNotDeployed", err)
	}
}

func FuzzUntar(f *testing.F) {
	for _, entries := range [][]tarEntry{
		{{hdr: tar.Header{Name: "a/b"}, body: []byte("x")}},
		{{hdr: tar.Header{Name: "../x"}}},
		{{hdr: tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}}, {hdr: tar.Header{Name: "l/y"}}},
		{{hdr: tar.Header{Name: "d/.wh..wh..opq"}}, {hdr: tar.Header{Name: ".wh.d"}}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			h := e.hdr
			h.Size = int64(len(e.body))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			tw.WriteHeader(&h)
			tw.Write(e.body)
		}
		tw.Close()
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "root")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		budget := limits{bytes: 1 << 20, entries: 1000}
		untar(root, bytes.NewReader(data), &budget)
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("untar wrote outside its root: %v", entries)
		}
	})
}
