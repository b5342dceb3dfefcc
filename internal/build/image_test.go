package build

import (
	"bytes"
	stdgzip "compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func testImage(t *testing.T, binary string, s imageSpec) v1.Image {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte(binary), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := buildImage(p, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("image does not validate: %v", err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestImageReproducible checks that the image depends only on its inputs,
// and on each of them.
func TestImageReproducible(t *testing.T) {
	spec := imageSpec{App: "demo", Commit: "0123456789abcdef0123456789abcdef01234567",
		CommitTime: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Source: "https://example.com/demo.git", Port: 8080, Arch: "amd64"}
	first := digestOf(t, testImage(t, "binary", spec))
	if again := digestOf(t, testImage(t, "binary", spec)); again != first {
		t.Fatalf("same inputs: %s then %s", first, again)
	}
	changes := map[string]func(s *imageSpec) string{
		"binary": func(s *imageSpec) string { return "other binary" },
		"commit": func(s *imageSpec) string { s.Commit = "1123456789abcdef0123456789abcdef01234567"; return "binary" },
		"time":   func(s *imageSpec) string { s.CommitTime = s.CommitTime.Add(time.Second); return "binary" },
		"port":   func(s *imageSpec) string { s.Port = 9000; return "binary" },
		"app":    func(s *imageSpec) string { s.App = "other"; return "binary" },
	}
	for name, change := range changes {
		s := spec
		bin := change(&s)
		if d := digestOf(t, testImage(t, bin, s)); d == first {
			t.Errorf("changing the %s left the digest %s", name, d)
		}
	}
}

// TestBaseLayerShared checks that the base layer is the same for every
// app and commit, so registries store it once.
func TestBaseLayerShared(t *testing.T) {
	a := testImage(t, "a", imageSpec{App: "a", Commit: "a", CommitTime: time.Unix(1e9, 0), Port: 1, Arch: "amd64"})
	b := testImage(t, "b", imageSpec{App: "b", Commit: "b", CommitTime: time.Unix(2e9, 0), Port: 2, Arch: "arm64"})
	la, _ := a.Layers()
	lb, _ := b.Layers()
	da, _ := la[0].Digest()
	db, _ := lb[0].Digest()
	if da != db {
		t.Errorf("base layers differ: %s and %s", da, db)
	}
}

func TestImageConfigAndFiles(t *testing.T) {
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	img := testImage(t, "#!binary", imageSpec{App: "demo", Commit: "0123456789abcdef0123456789abcdef01234567",
		CommitTime: when, Source: "https://example.com/demo.git", Port: 9000, Arch: "arm64"})
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.OS != "linux" || !cf.Created.Time.Equal(when) {
		t.Errorf("platform %s/%s created %v", cf.OS, cf.Architecture, cf.Created)
	}
	want := map[string]string{
		LabelRevision: "0123456789abcdef0123456789abcdef01234567",
		LabelSource:   "https://example.com/demo.git",
		LabelCreated:  "2026-03-01T12:00:00Z",
		LabelTitle:    "demo",
		LabelVersion:  "0123456",
	}
	if diff := cmp.Diff(want, cf.Config.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if _, ok := cf.Config.ExposedPorts["9000/tcp"]; !ok || cf.Config.User != "65532:65532" {
		t.Errorf("ports %v user %q", cf.Config.ExposedPorts, cf.Config.User)
	}
	files := imageFiles(t, img)
	if got := string(files["app/demo"].body); got != "#!binary" || files["app/demo"].mode != 0o755 {
		t.Errorf("app/demo = %q mode %o", got, files["app/demo"].mode)
	}
	for name := range files {
		if filepath.IsAbs(name) || name == ".." || len(name) > 2 && name[:3] == "../" {
			t.Errorf("layer entry %q escapes the root", name)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group", "etc/nsswitch.conf", "tmp/", "home/nonroot/"} {
		if _, ok := files[f]; !ok {
			t.Errorf("no %s in the image", f)
		}
	}
}

// TestLayerMembers checks that a layer compressed in several gzip members
// reads back whole with a standard gzip reader, and that its digests are
// those of its bytes.
func TestLayerMembers(t *testing.T) {
	data := make([]byte, 2*memberSize+12345)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	l, err := layerFromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := stdgzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("decompressed %d bytes, want the %d written", len(got), len(data))
	}
	comp, _ := io.ReadAll(mustReader(t, l.Compressed))
	wantDigest := sha256.Sum256(comp)
	wantDiff := sha256.Sum256(data)
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	if d.Hex != hex.EncodeToString(wantDigest[:]) || diff.Hex != hex.EncodeToString(wantDiff[:]) {
		t.Errorf("digest %s diffID %s do not match the bytes", d, diff)
	}
	again, _ := layerFromBytes(data)
	if d2, _ := again.Digest(); d2 != d {
		t.Errorf("compressing twice: %s then %s", d, d2)
	}
}

func mustReader(t *testing.T, open func() (io.ReadCloser, error)) io.Reader {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}
