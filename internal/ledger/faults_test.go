//go:build integration

package ledger

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/testenv"
)

// lockerEnv, when set, makes the test binary the other process of
// TestLockedByAnotherProcess: it opens the SQLite file it names, holds a
// write transaction until its standard input closes, then rolls back.
const lockerEnv = "SLIPWAY_TEST_LEDGER_LOCKER"

func TestMain(m *testing.M) {
	if path := os.Getenv(lockerEnv); path != "" {
		if err := holdWriteLock(path); err != nil {
			fmt.Fprintln(os.Stderr, "locker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func holdWriteLock(path string) error {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO builds (app, commit_sha, state, created_at, updated_at) VALUES ('other', 'x', 'queued', '', '')"); err != nil {
		return err
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	_, err = conn.ExecContext(ctx, "ROLLBACK")
	return err
}

// TestLockedByAnotherProcess has another process hold a write transaction
// on the ledger: reads go on, a write fails after the busy timeout with an
// error that says the ledger is locked and what to do, nothing written
// before is lost, and writes go through once the other process lets go.
func TestLockedByAnotherProcess(t *testing.T) {
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

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockerEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("the other process did not take the lock: %q, %v", line, err)
	}

	// Reads are not held up (WAL).
	if got, err := s.GetBuild(ctx, before.ID); err != nil || got.Commit != before.Commit {
		t.Errorf("read while locked = %+v, %v", got, err)
	}
	// A write waits for the busy timeout, then fails saying why.
	_, werr := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("b", 40)})
	err = Explain(werr)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("write while locked = %v, want ErrLocked", err)
	}
	for _, want := range []string{"locked by another process", "fuser", "record build of bbbbbbb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("write while locked: %v", err)

	// The other process lets go (rolls back): the write goes through, and
	// every row written before is there.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the other process: %v", err)
	}
	after, err := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("b", 40)})
	if err != nil {
		t.Fatalf("write once the lock is gone: %v", err)
	}
	for _, b := range []Build{before, after} {
		if got, err := s.GetBuild(ctx, b.ID); err != nil || got.Commit != b.Commit {
			t.Errorf("build %d = %+v, %v; want commit %s", b.ID, got, err, b.Commit)
		}
	}
}

// readOnlyMount makes dir read-only by bind-mounting it on itself and
// remounting that read-only (root only: root ignores file modes), and
// returns a function that makes it writable again. The mount is undone
// when the test ends.
func readOnlyMount(t *testing.T, dir string) (writable func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root, to make a directory read-only with a bind mount (root ignores file modes)")
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s: %v", dir, err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	return func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Fatalf("unmount %s: %v", dir, err)
		}
		mounted = false
	}
}

// TestReadOnly opens a ledger whose directory is read-only: Open fails
// naming the file and saying what to do, and opens once the directory is
// writable again, with nothing lost.
func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("a", 40)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	writable := readOnlyMount(t, dir)
	_, err = Open(ctx, path)
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Open of a read-only ledger = %v, want ErrReadOnly", err)
	}
	for _, want := range []string{path, "read-only", "writable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("open read-only: %v", err)

	writable()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("Open once writable: %v", err)
	}
	defer s.Close()
	if got, err := s.GetBuild(ctx, b.ID); err != nil || got.Commit != b.Commit {
		t.Errorf("build written before = %+v, %v", got, err)
	}
	if _, err := s.CreateBuild(ctx, Build{App: "app", Commit: strings.Repeat("b", 40), Created: time.Now()}); err != nil {
		t.Errorf("write once writable: %v", err)
	}
}
