package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// PyAppDir returns the directory of the Python test service, test/pyapp,
// found above the test's working directory: a web service built from its
// Dockerfile, on the Debian base PushDebianPython pushes.
func PyAppDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		app := filepath.Join(dir, "test", "pyapp")
		if _, err := os.Stat(filepath.Join(app, "Dockerfile")); err == nil {
			return app
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			Missing(t, "the Python test service test/pyapp (not found above the test's directory)")
		}
		dir = parent
	}
}

// PyAppRepo copies the Python test service into a new git repository with
// one commit on master (fixed dates, as SampleAppRepo), and returns the
// repository's directory and that commit.
func PyAppRepo(t testing.TB) (dir, commit string) {
	t.Helper()
	LookPath(t, "git")
	dir = filepath.Join(t.TempDir(), "pyapp")
	if err := os.CopyFS(dir, os.DirFS(PyAppDir(t))); err != nil {
		t.Fatal(err)
	}
	Git(t, dir, "init", "-q", "-b", "master")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "pyapp")
	return dir, Git(t, dir, "rev-parse", "HEAD")
}
