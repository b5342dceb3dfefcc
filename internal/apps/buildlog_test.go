package apps

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

func openStore(t *testing.T) *ledger.Store {
	t.Helper()
	store, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func createBuild(t *testing.T, store *ledger.Store, b ledger.Build) ledger.Build {
	t.Helper()
	b, err := store.CreateBuild(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCopyBuildLog(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	dir := t.TempDir()
	c1, c2, c3 := strings.Repeat("1", 40), "12"+strings.Repeat("a", 38), strings.Repeat("3", 40)

	// c1: built twice; the newest build's log is the one shown.
	old := filepath.Join(dir, "old.log")
	os.WriteFile(old, []byte("old build\n"), 0o644)
	createBuild(t, store, ledger.Build{App: "web", Commit: c1, State: ledger.BuildFailed, LogPath: old, Reason: "tests failed (exit status 1); output in …\n--- FAIL"})
	newer := filepath.Join(dir, "new.log")
	os.WriteFile(newer, []byte("$ go test ./...\n# tests passed in 1s\n"), 0o644)
	createBuild(t, store, ledger.Build{App: "web", Commit: c1, State: ledger.BuildPushed, LogPath: newer})
	// c2: another app's build, then a build with nothing to do.
	createBuild(t, store, ledger.Build{App: "api", Commit: c2, State: ledger.BuildPushed, LogPath: old})
	createBuild(t, store, ledger.Build{App: "web", Commit: c2, State: ledger.BuildPushed, Reason: "already built: …; nothing tested or built"})
	// c3: a build whose log went away.
	createBuild(t, store, ledger.Build{App: "web", Commit: c3, State: ledger.BuildFailed, LogPath: filepath.Join(dir, "gone.log"), Reason: "go build failed"})

	for _, tt := range []struct {
		app, commit string
		want        string
		err         error
		msg         string
	}{
		{app: "web", commit: c1[:7], want: "$ go test ./...\n# tests passed in 1s\n"},
		{app: "web", commit: c1, want: "$ go test ./...\n# tests passed in 1s\n"},
		{app: "web", commit: c2[:7], want: "build 4 of " + c2 + ": pushed, no log: already built: …; nothing tested or built\n"},
		{app: "api", commit: c2[:7], want: "old build\n"},
		{app: "web", commit: "", err: ledger.ErrNotFound, msg: "build 5 of 3333333: its log " + dir + "/gone.log is gone"},
		{app: "web", commit: "latest", err: ledger.ErrNotFound, msg: "is gone"},
		{app: "api", commit: "latest", want: "old build\n"},
		{app: "", commit: "1111", want: "$ go test ./...\n# tests passed in 1s\n"},
		{app: "", commit: "12", err: ledger.ErrNotFound, msg: "at least 4 hex digits"},
		{app: "", commit: "1", err: ledger.ErrNotFound},
		{app: "", commit: "12aa", want: "build 4 of " + c2 + ": pushed, no log: already built: …; nothing tested or built\n"},
		{app: "web", commit: "4444444", err: ledger.ErrNotFound, msg: "no build of web of commit 4444444"},
		{app: "db", commit: "latest", err: ledger.ErrNotFound, msg: "no build of db yet"},
	} {
		var out strings.Builder
		err := CopyBuildLog(ctx, store, tt.app, tt.commit, false, &out)
		if !errors.Is(err, tt.err) || (tt.msg != "" && !strings.Contains(err.Error(), tt.msg)) {
			t.Errorf("%s %q: error %v, want %v saying %q", tt.app, tt.commit, err, tt.err, tt.msg)
		}
		if out.String() != tt.want {
			t.Errorf("%s %q: %q, want %q", tt.app, tt.commit, out.String(), tt.want)
		}
	}

	// Two commits of web start with 1: the prefix must say which.
	createBuild(t, store, ledger.Build{App: "web", Commit: "1" + strings.Repeat("b", 39), State: ledger.BuildQueued})
	if err := CopyBuildLog(ctx, store, "web", "1", false, io.Discard); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("a 1-digit prefix: %v", err)
	}
	if err := CopyBuildLog(ctx, store, "web", "1111", false, io.Discard); err != nil {
		t.Errorf("4 digits of one commit: %v", err)
	}
	createBuild(t, store, ledger.Build{App: "web", Commit: "1111" + strings.Repeat("c", 36), State: ledger.BuildQueued})
	if err := CopyBuildLog(ctx, store, "web", "1111", false, io.Discard); !errors.Is(err, ledger.ErrAmbiguous) {
		t.Errorf("a prefix of two built commits: %v, want ErrAmbiguous", err)
	}
	// The newest build is queued: no log yet.
	var out strings.Builder
	if err := CopyBuildLog(ctx, store, "web", "latest", false, &out); err != nil || out.String() != "build 7 of 1111"+strings.Repeat("c", 36)+": queued, no log yet\n" {
		t.Errorf("a queued build: %q, %v", out.String(), err)
	}
}

// TestFollowBuildLog follows a build from queued to failed: what its log
// gets is copied as it comes, and the copy ends when the build does.
func TestFollowBuildLog(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	commit := strings.Repeat("5", 40)
	b := createBuild(t, store, ledger.Build{App: "web", Commit: commit})
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := CopyBuildLog(ctx, store, "web", commit[:7], true, pw)
		pw.Close()
		done <- err
	}()
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				got <- string(buf[:n])
			}
			if err != nil {
				close(got)
				return
			}
		}
	}()
	read := func(want string) {
		t.Helper()
		var s string
		deadline := time.After(10 * time.Second)
		for s != want {
			select {
			case part, ok := <-got:
				if !ok {
					t.Fatalf("the copy ended after %q, want %q", s, want)
				}
				s += part
			case <-deadline:
				t.Fatalf("copied %q, want %q", s, want)
			}
		}
	}

	// The build starts testing: its log appears.
	logPath := filepath.Join(t.TempDir(), "5.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("# testing: go test ./...\n")
	b.State, b.LogPath = ledger.BuildTesting, logPath
	if err := store.UpdateBuild(ctx, &b); err != nil {
		t.Fatal(err)
	}
	read("# testing: go test ./...\n")
	f.WriteString("# still testing, 10 s\n")
	read("# still testing, 10 s\n")
	select {
	case err := <-done:
		t.Fatalf("the copy ended while the build runs: %v", err)
	default:
	}
	f.WriteString("--- FAIL: TestX\n")
	b.State, b.Reason = ledger.BuildFailed, "tests failed (exit status 1); output in "+logPath+":\n--- FAIL: TestX"
	if err := store.UpdateBuild(ctx, &b); err != nil {
		t.Fatal(err)
	}
	read("--- FAIL: TestX\n# build 1 failed: tests failed (exit status 1); output in " + logPath + ":\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rest, ok := <-got; ok {
		t.Errorf("copied after the build ended: %q", rest)
	}
}

// TestFollowBuildLogEndsWithContext: following a running build stops,
// without an error, when the caller goes, and not before.
func TestFollowBuildLogEndsWithContext(t *testing.T) {
	store := openStore(t)
	logPath := filepath.Join(t.TempDir(), "6.log")
	if err := os.WriteFile(logPath, []byte("# testing: go test ./...\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := createBuild(t, store, ledger.Build{App: "web", Commit: strings.Repeat("6", 40)})
	b.State, b.LogPath = ledger.BuildTesting, logPath
	if err := store.UpdateBuild(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	copied := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- CopyBuildLog(ctx, store, "web", "latest", true, writerFunc(func(p []byte) (int, error) {
			select {
			case <-copied:
			default:
				close(copied)
			}
			return len(p), nil
		}))
	}()
	select {
	case <-copied: // following now: the log so far is copied
	case err := <-done:
		t.Fatalf("the copy of a running build ended before copying anything: %v", err)
	}
	// A copy that does not follow ends at once; this one must still
	// run after two reads of the row.
	select {
	case err := <-done:
		t.Fatalf("the copy of a running build ended before the caller went: %v", err)
	case <-time.After(2 * followEvery):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow until the caller goes: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
