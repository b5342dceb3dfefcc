package demo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"slipway.dev/slipway/internal/demo/appsource"
	"slipway.dev/slipway/internal/testenv"
)

// TestArchiveUpToDate fails when examples/birthday-app changed and the
// embedded archive was not generated again.
func TestArchiveUpToDate(t *testing.T) {
	testenv.LookPath(t, "git")
	want, err := appsource.PackDir("../../examples/birthday-app")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, AppArchive()) {
		t.Fatal("internal/demo/birthday-app.tar is out of date with examples/birthday-app: run `go generate ./internal/demo` and commit the archive")
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := appsource.Unpack(AppArchive(), dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"go.mod", "main.go", "smoke/smoke_test.go"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("unpacked archive lacks %s: %v", f, err)
		}
	}
}
