package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/testenv"
)

// gitIn runs git in dir for test setup, with a fixed identity and dates.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_AUTHOR_DATE=2026-03-01T12:00:00Z", "GIT_COMMITTER_DATE=2026-03-01T12:00:00Z")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRepo makes a repository with one commit on master and returns its
// path and the commit.
func newRepo(t *testing.T) (string, string) {
	t.Helper()
	testenv.LookPath(t, "git")
	dir := t.TempDir()
	gitIn(t, dir, "init", "-q", "-b", "master")
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, dir, "add", ".")
	gitIn(t, dir, "commit", "-q", "-m", "one")
	return dir, gitIn(t, dir, "rev-parse", "HEAD")
}

func TestFetchResolveCheckout(t *testing.T) {
	ctx := context.Background()
	repo, first := newRepo(t)
	s := New(repo, filepath.Join(t.TempDir(), MirrorDir))
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"master", first, first[:7], "refs/heads/master"} {
		got, err := s.Resolve(ctx, rev)
		if err != nil || got != first {
			t.Errorf("Resolve(%q) = %q, %v; want %s", rev, got, err, first)
		}
	}

	// A new commit and a tag upstream reach the mirror on the next fetch.
	if err := os.WriteFile(filepath.Join(repo, "a.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "commit", "-q", "-am", "two")
	second := gitIn(t, repo, "rev-parse", "HEAD")
	gitIn(t, repo, "tag", "v1", first)
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Resolve(ctx, "master"); got != second {
		t.Errorf("master after fetch = %s, want %s", got, second)
	}
	if got, _ := s.Resolve(ctx, "v1"); got != first {
		t.Errorf("tag v1 = %s, want %s", got, first)
	}

	when, err := s.CommitTime(ctx, first)
	if err != nil || !when.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("CommitTime = %v, %v", when, err)
	}

	work := filepath.Join(t.TempDir(), "work")
	if err := s.Checkout(ctx, first, work); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(work, "a.txt"))
	if err != nil || string(b) != "one\n" {
		t.Errorf("checked-out a.txt = %q, %v; want the first commit's", b, err)
	}
	if head := gitIn(t, work, "rev-parse", "HEAD"); head != first {
		t.Errorf("checkout HEAD = %s, want %s", head, first)
	}
	// Clean undoes what a test run leaves behind.
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("changed"), 0o644)
	os.WriteFile(filepath.Join(work, "junk"), nil, 0o644)
	if err := Clean(ctx, work); err != nil {
		t.Fatal(err)
	}
	if st := gitIn(t, work, "status", "--porcelain", "--ignored"); st != "" {
		t.Errorf("status after Clean = %q, want clean", st)
	}

	// The same directory takes another commit, left exactly as committed.
	os.WriteFile(filepath.Join(work, "junk"), nil, 0o644)
	if err := s.Checkout(ctx, second, work); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "a.txt")); string(b) != "two\n" {
		t.Errorf("reused checkout a.txt = %q, want the second commit's", b)
	}
	if st := gitIn(t, work, "status", "--porcelain", "--ignored"); st != "" {
		t.Errorf("status of reused checkout = %q, want clean", st)
	}
}

func TestUnknownRevision(t *testing.T) {
	ctx := context.Background()
	repo, _ := newRepo(t)
	s := New(repo, filepath.Join(t.TempDir(), MirrorDir))
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"nosuchbranch", "0123456789012345678901234567890123456789", "--help", ""} {
		_, err := s.Resolve(ctx, rev)
		if !errors.Is(err, ErrUnknownRevision) {
			t.Errorf("Resolve(%q) = %v, want ErrUnknownRevision", rev, err)
		}
	}
	_, err := s.Resolve(ctx, "nosuchbranch")
	if want := `"nosuchbranch" is not a branch, tag or commit of `; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("message = %v, want it to contain %q", err, want)
	}
}

func TestUnreachable(t *testing.T) {
	testenv.LookPath(t, "git")
	ctx := context.Background()
	for _, u := range []string{
		filepath.Join(t.TempDir(), "missing.git"),
		"http://user:s3cret@127.0.0.1:1/app.git", // nothing listens on port 1
	} {
		s := New(u, filepath.Join(t.TempDir(), MirrorDir))
		err := s.Fetch(ctx)
		if !errors.Is(err, ErrUnreachable) {
			t.Errorf("Fetch(%s) = %v, want ErrUnreachable", u, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "user:") {
			t.Errorf("error leaks credentials: %v", err)
		}
	}
}

func TestCancelStopsGit(t *testing.T) {
	repo, _ := newRepo(t)
	s := New(repo, filepath.Join(t.TempDir(), MirrorDir))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Fetch(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:token@github.com/o/r.git":          "https://github.com/o/r.git",
		"https://x-access-token@github.com/o/r.git":      "https://github.com/o/r.git",
		"fetch https://u:p@host/r.git: fatal: not found": "fetch https://host/r.git: fatal: not found",
		"/srv/app.git":           "/srv/app.git",
		"git@github.com:o/r.git": "git@github.com:o/r.git",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConcurrentFetch fetches into one mirror from several sources at once
// (as slipway serve and slipway build may): every fetch succeeds.
func TestConcurrentFetch(t *testing.T) {
	ctx := context.Background()
	repo, _ := newRepo(t)
	mirror := filepath.Join(t.TempDir(), MirrorDir)
	if err := New(repo, mirror).Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		os.WriteFile(filepath.Join(repo, "a.txt"), []byte(fmt.Sprint(i)), 0o644)
		gitIn(t, repo, "commit", "-q", "-am", fmt.Sprint(i))
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- New(repo, mirror).Fetch(ctx) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
