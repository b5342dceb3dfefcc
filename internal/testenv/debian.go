package testenv

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// DebianSuite is the Debian release of the test base image.
const DebianSuite = "bookworm"

// debianPackages are added to debootstrap's minbase: python3 with its
// standard library (http.server is not in python3-minimal).
var debianPackages = []string{"python3"}

// debianSkip are left out of the base image's layer: documentation and
// apt's indexes, which a test image never needs.
var debianSkip = []string{"usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info",
	"var/lib/apt/lists", "var/cache/apt", "var/cache/debconf/templates.dat-old", "var/log"}

// CacheDir is where tests keep what is slow to make and the same every
// run: ${XDG_CACHE_HOME:-~/.cache}/slipway/NAME.
func CacheDir(t testing.TB, name string) string {
	t.Helper()
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			Missing(t, "a cache directory: neither XDG_CACHE_HOME nor HOME is set")
		}
		base = filepath.Join(home, ".cache")
	}
	dir := filepath.Join(base, "slipway", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// DebianPythonLayer returns a gzip-compressed tar of a Debian root file
// system with python3 (debootstrap --variant=minbase --include=python3),
// made once and kept in CacheDir(t, "testbase"): the first call takes
// minutes and needs root, debootstrap and the Debian mirror
// (SLIPWAY_TEST_DEBIAN_MIRROR, default http://deb.debian.org/debian).
// Concurrent test processes make it once between them.
func DebianPythonLayer(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(CacheDir(t, "testbase"), "debian-"+DebianSuite+"-"+strings.Join(debianPackages, "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock := lockFile(t, filepath.Join(dir, "lock"))
	defer unlock()
	layer := filepath.Join(dir, "layer.tar.gz")
	if _, err := os.Stat(layer); err == nil {
		return layer
	}
	rootfs := filepath.Join(dir, "rootfs")
	if _, err := os.Stat(filepath.Join(rootfs, "usr", "bin", "python3")); err != nil {
		debootstrap(t, rootfs)
	}
	os.Remove(filepath.Join(dir, "layer.digests")) // of an earlier layer
	if err := writeLayer(rootfs, layer); err != nil {
		t.Fatalf("make the Debian base layer: %v", err)
	}
	return layer
}

// debootstrap makes a Debian root file system in dir.
func debootstrap(t testing.TB, dir string) {
	t.Helper()
	bin := LookPath(t, "debootstrap")
	if os.Geteuid() != 0 {
		Missing(t, "root, for debootstrap to make the Debian base image")
	}
	mirror := os.Getenv("SLIPWAY_TEST_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	t.Logf("making the Debian base with debootstrap into %s (once; takes minutes)", dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--variant=minbase", "--include="+strings.Join(debianPackages, ","), DebianSuite, tmp, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("debootstrap %s from %s: %v\n%s", DebianSuite, mirror, err, lastN(string(out), 20))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
}

func lastN(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// lockFile takes an exclusive lock on path, waiting for it.
func lockFile(t testing.TB, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}

// writeLayer writes the files of rootfs as a gzip tar to path (through a
// temporary file, renamed when complete). Device nodes are left out: the
// runtimes mount their own /dev.
func writeLayer(rootfs, path string) (err error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	if err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		return addToTar(tw, rootfs, p, d, err)
	}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// addToTar adds the entry p of the walk of rootfs to tw.
func addToTar(tw *tar.Writer, rootfs, p string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(rootfs, p)
	if rel == "." {
		return nil
	}
	for _, s := range debianSkip {
		if rel == s || strings.HasPrefix(rel, s+"/") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
	}
	fi, err := d.Info()
	if err != nil {
		return err
	}
	if fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
		return nil
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name = rel
	if fi.IsDir() {
		h.Name += "/"
	}
	h.Uname, h.Gname = "", ""
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	src, err := os.Open(p)
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = io.Copy(tw, src)
	return err
}

// PushDebianPython pushes the Debian base with python3
// (DebianPythonLayer) to ref, such as 127.0.0.1:5000/pybase:bookworm, as
// an image whose command is python3, and returns its digest.
func PushDebianPython(t testing.TB, ctx context.Context, ref string) v1.Hash {
	t.Helper()
	layer, err := debianPythonImageLayer(t)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{CreatedBy: "debootstrap --variant=minbase --include=" + strings.Join(debianPackages, ",") + " " + DebianSuite}})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	cf.Config.Cmd = []string{"python3"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push the Debian base to %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// debianPythonImageLayer is DebianPythonLayer as an image layer whose
// digests come from layer.digests beside it, written the first time: hashing
// the uncompressed layer takes over a minute under the race detector.
func debianPythonImageLayer(t testing.TB) (v1.Layer, error) {
	t.Helper()
	path := DebianPythonLayer(t)
	unlock := lockFile(t, filepath.Join(filepath.Dir(path), "lock"))
	defer unlock()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	sums := path[:len(path)-len(".tar.gz")] + ".digests"
	l := cachedLayer{path: path}
	if b, err := os.ReadFile(sums); err == nil {
		var size int64
		var digest, diffID string
		if _, err := fmt.Sscanf(string(b), "%d %s %s", &size, &digest, &diffID); err == nil && size == fi.Size() {
			l.size = size
			l.digest, err = v1.NewHash(digest)
			if err == nil {
				l.diffID, err = v1.NewHash(diffID)
			}
			if err == nil {
				return partial.CompressedToLayer(l)
			}
		}
	}
	tl, err := tarball.LayerFromFile(path, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	if l.digest, err = tl.Digest(); err != nil {
		return nil, err
	}
	if l.diffID, err = tl.DiffID(); err != nil {
		return nil, err
	}
	l.size = fi.Size()
	if err := os.WriteFile(sums+".tmp", fmt.Appendf(nil, "%d %s %s\n", l.size, l.digest, l.diffID), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(sums+".tmp", sums); err != nil {
		return nil, err
	}
	return partial.CompressedToLayer(l)
}

// cachedLayer is a gzip layer file with its digests known.
type cachedLayer struct {
	path           string
	size           int64
	digest, diffID v1.Hash
}

func (l cachedLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l cachedLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l cachedLayer) Size() (int64, error)                { return l.size, nil }
func (l cachedLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l cachedLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
