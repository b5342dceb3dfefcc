package gitsource

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The watcher calls back for every way a push moves refs: a commit on a
// branch, a new branch in a new directory, a tag, refs packed, a branch
// deleted; not for a change that moves no ref.
func TestRefsWatcher(t *testing.T) {
	src, _ := newRepo(t)
	dir := t.TempDir()
	gitIn(t, dir, "clone", "-q", "--bare", src, ".")
	work := t.TempDir()
	gitIn(t, work, "clone", "-q", dir, ".")

	rw, err := NewRefsWatcher()
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan struct{}, 100)
	if ok, err := rw.Add(New(dir, t.TempDir()), func() { calls <- struct{}{} }); !ok || err != nil {
		t.Fatalf("Add of a local repository: %v, %v", ok, err)
	}
	if ok, err := rw.Add(New("https://example.com/app.git", t.TempDir()), func() {}); ok || err != nil {
		t.Fatalf("Add of a remote repository: %v, %v; want not watched, no error", ok, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rw.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	drain := func() {
		for {
			select {
			case <-calls:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	expect := func(what string) {
		t.Helper()
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no call", what)
		}
		drain()
	}
	commit := func(msg string) {
		if err := os.WriteFile(filepath.Join(work, "f"), []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
		gitIn(t, work, "add", ".")
		gitIn(t, work, "commit", "-q", "-m", msg)
	}

	commit("two")
	gitIn(t, work, "push", "-q", "origin", "HEAD:master")
	expect("a push to master")

	gitIn(t, work, "push", "-q", "origin", "HEAD:refs/heads/team/x")
	expect("a new branch in a new directory")
	commit("three")
	gitIn(t, work, "push", "-q", "origin", "HEAD:refs/heads/team/x")
	expect("a push to a branch of the new directory")

	gitIn(t, work, "tag", "v1")
	gitIn(t, work, "push", "-q", "origin", "v1")
	expect("a tag")

	gitIn(t, dir, "pack-refs", "--all")
	expect("refs packed")

	gitIn(t, work, "push", "-q", "origin", "--delete", "team/x")
	expect("a branch deleted")

	gitIn(t, dir, "gc", "-q", "--prune=now")
	drain()
	commit("not pushed")
	gitIn(t, dir, "count-objects")
	select {
	case <-calls:
		t.Error("a call with no ref moved")
	case <-time.After(300 * time.Millisecond):
	}
}
