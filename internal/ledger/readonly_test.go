//go:build integration

package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"slipway.dev/slipway/internal/testenv"
)

// immutable makes the ledger's files at path immutable (chattr +i: even
// root cannot write them, through descriptors opened before too) and
// returns a function that makes them writable again; they are made
// writable when the test ends.
func immutable(t *testing.T, path string) (writable func()) {
	t.Helper()
	testenv.LookPath(t, "chattr")
	files := []string{path, path + "-wal"}
	set := func(flag string) error {
		out, err := exec.Command("chattr", append([]string{flag}, files...)...).CombinedOutput()
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := set("+i"); err != nil {
		testenv.Missing(t, "chattr +i on "+filepath.Dir(path)+" (root, on a file system with immutable files): "+err.Error())
	}
	done := false
	t.Cleanup(func() {
		if !done {
			set("-i")
		}
	})
	return func() {
		if err := set("-i"); err != nil {
			t.Fatalf("chattr -i: %v", err)
		}
		done = true
	}
}

// TestReadOnlyWhileOpen makes the files of an open ledger immutable: a
// write fails with ErrReadOnly naming what to do, reads go on, and
// writes go through once the files are writable again, with nothing lost.
func TestReadOnlyWhileOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, err := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("a", 40)})
	if err != nil {
		t.Fatal(err)
	}

	writable := immutable(t, path)
	_, werr := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("b", 40)})
	t.Logf("raw: %v", werr)
	err = Explain(werr)
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to an immutable ledger = %v, want ErrReadOnly", err)
	}
	for _, want := range []string{"read-only", "writable", "record build of bbbbbbb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("write while read-only: %v", err)
	if got, err := s.GetBuild(ctx, before.ID); err != nil || got.Commit != before.Commit {
		t.Errorf("read while read-only = %+v, %v", got, err)
	}

	writable()
	after, err := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("b", 40)})
	if err != nil {
		t.Fatalf("write once writable: %v", err)
	}
	for _, b := range []Build{before, after} {
		if got, err := s.GetBuild(ctx, b.ID); err != nil || got.Commit != b.Commit {
			t.Errorf("build %d = %+v, %v; want commit %s", b.ID, got, err, b.Commit)
		}
	}
}

// TestExplainWrite explains an error of the database only: a build's own
// file that cannot be written is not the ledger.
func TestExplainWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	own := fmt.Errorf("make work directory: %w", &os.PathError{Op: "mkdir", Path: "/x", Err: syscall.EACCES})
	if got := ExplainWrite(own); got != own {
		t.Errorf("ExplainWrite(%v) = %v, want it as it was", own, got)
	}
	writable := immutable(t, path)
	defer writable()
	_, werr := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("b", 40)})
	if err := ExplainWrite(fmt.Errorf("build: %w", werr)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("ExplainWrite of the ledger's write = %v, want ErrReadOnly", err)
	}
}
