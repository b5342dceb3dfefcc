package appsource

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPackIsDeterministicAndUnpacks(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"go.mod": "module x\n", "main.go": "package main\n", "smoke/smoke_test.go": "package smoke\n"}
	for name, body := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"go.mod", "main.go", "smoke/smoke_test.go"}
	var a, b bytes.Buffer
	if err := Pack(&a, src, names); err != nil {
		t.Fatal(err)
	}
	// Other times and modes on disk give the same bytes.
	os.Chtimes(filepath.Join(src, "main.go"), epoch.AddDate(3, 0, 0), epoch.AddDate(3, 0, 0))
	os.Chmod(filepath.Join(src, "go.mod"), 0o644)
	if err := Pack(&b, src, names); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two packs of the same files differ")
	}
	dst := t.TempDir()
	if err := Unpack(a.Bytes(), dst); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, name := range names {
		body, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		got[name] = string(body)
	}
	if diff := cmp.Diff(files, got); diff != "" {
		t.Errorf("unpacked files (-want +got):\n%s", diff)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/etc/evil", "a/../../evil", "./a"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: 1})
		tw.Write([]byte("x"))
		tw.Close()
		err := Unpack(buf.Bytes(), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "not a clean relative path") {
			t.Errorf("Unpack of %q: %v, want a refusal", name, err)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc/passwd"})
	tw.Close()
	if err := Unpack(buf.Bytes(), t.TempDir()); err == nil {
		t.Error("Unpack of a symlink succeeded")
	}
}
