package gitsource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReleaseOperations(t *testing.T) {
	ctx := context.Background()
	work, c1 := newRepo(t)
	if err := os.WriteFile(filepath.Join(work, "a.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, work, "commit", "-q", "-am", "two")
	c2 := gitIn(t, work, "rev-parse", "HEAD")
	bare := filepath.Join(t.TempDir(), "app.git")
	gitIn(t, work, "clone", "-q", "--bare", work, bare)
	s := New(bare, filepath.Join(t.TempDir(), MirrorDir))
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}

	if h, err := s.Head(ctx, "release"); err != nil || h != "" {
		t.Errorf("Head(release) before it exists = %q, %v; want empty", h, err)
	}
	if h, err := s.Head(ctx, "master"); err != nil || h != c2 {
		t.Errorf("Head(master) = %q, %v; want %s", h, err, c2)
	}
	for _, tt := range []struct {
		a, d string
		want bool
	}{{c1, c2, true}, {c2, c1, false}, {c2, c2, true}} {
		if got, err := s.IsAncestor(ctx, tt.a, tt.d); err != nil || got != tt.want {
			t.Errorf("IsAncestor(%s, %s) = %v, %v; want %v", tt.a[:7], tt.d[:7], got, err, tt.want)
		}
	}
	log, err := s.Log(ctx, c1, c2, 10)
	if err != nil || len(log) != 1 || log[0].Hash != c2 || log[0].Subject != "two" {
		t.Errorf("Log(c1..c2) = %+v, %v", log, err)
	}
	if log, err := s.Log(ctx, "", c2, 10); err != nil || len(log) != 2 {
		t.Errorf("Log(c2) = %+v, %v; want 2 commits", log, err)
	}

	// Create, move forwards and back, with a lease; each move changes the
	// refs' stamp.
	stamp, ok, err := s.RefsStamp()
	if err != nil || !ok {
		t.Fatalf("RefsStamp of a local repository: %v, %v", ok, err)
	}
	if err := s.MoveBranch(ctx, "release", "", c2); err != nil {
		t.Fatal(err)
	}
	if again, _, _ := s.RefsStamp(); again == stamp {
		t.Errorf("RefsStamp unchanged after a push")
	}
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if heads, err := s.Heads(ctx); err != nil || heads["release"] != c2 || len(heads) < 2 {
		t.Errorf("Heads = %v, %v; want release at %s among them", heads, err, c2)
	}
	if _, ok, _ := New("https://example.com/app.git", t.TempDir()).RefsStamp(); ok {
		t.Errorf("RefsStamp of a remote repository: ok")
	}
	if err := s.MoveBranch(ctx, "release", c2, c1); err != nil {
		t.Fatal(err)
	}
	if got := gitIn(t, bare, "rev-parse", "release"); got != c1 {
		t.Errorf("release in the repository at %s, want %s", got, c1)
	}
	err = s.MoveBranch(ctx, "release", c2, c2)
	if !errors.Is(err, ErrBranchMoved) {
		t.Errorf("MoveBranch with a stale lease: %v, want ErrBranchMoved", err)
	}

	// Annotated tags, idempotent, refused on another commit.
	for range 2 {
		if err := s.TagRelease(ctx, "RC20261127_0930", c1, "RC20261127_0930: release of c1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := gitIn(t, bare, "cat-file", "-t", "RC20261127_0930"); got != "tag" {
		t.Errorf("tag object type %s, want an annotated tag", got)
	}
	if got := gitIn(t, bare, "rev-parse", "RC20261127_0930^{commit}"); got != c1 {
		t.Errorf("tag on %s, want %s", got, c1)
	}
	if err := s.TagRelease(ctx, "RC20261127_0930", c2, "again"); err == nil {
		t.Error("tagging another commit with an existing release name succeeded")
	}
	// A fetch keeps the pushed tag.
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Resolve(ctx, "RC20261127_0930"); err != nil || got != c1 {
		t.Errorf("after fetch: tag resolves to %s, %v", got, err)
	}
}

// TestWritesWaitForFetch: a release tag and a branch move wait while a
// fetch holds the mirror, and change nothing meanwhile (a fetch's prune, or
// its write of the branches it read, would otherwise undo them).
func TestWritesWaitForFetch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(ctx context.Context, s *Source, c1 string) error
		read  func(t *testing.T, dir string) string
		want  string
	}{
		{"release tag",
			func(ctx context.Context, s *Source, c1 string) error {
				return s.TagRelease(ctx, "RC20261202_1200", c1, "RC20261202_1200")
			},
			func(t *testing.T, dir string) string { return gitIn(t, dir, "tag", "--list") },
			"RC20261202_1200"},
		{"branch move",
			func(ctx context.Context, s *Source, c1 string) error { return s.MoveBranch(ctx, "release", "", c1) },
			func(t *testing.T, dir string) string {
				return gitIn(t, dir, "for-each-ref", "--format=%(refname)", "refs/heads/release")
			},
			"refs/heads/release"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			work, c1 := newRepo(t)
			bare := filepath.Join(t.TempDir(), "app.git")
			gitIn(t, work, "clone", "-q", "--bare", work, bare)
			mirror := filepath.Join(t.TempDir(), MirrorDir)
			s := New(bare, mirror)
			if err := s.Fetch(ctx); err != nil {
				t.Fatal(err)
			}
			unlock, err := lockFile(ctx, mirror+".lock") // as a fetch of another process holds it
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- tc.write(ctx, s, c1) }()
			select {
			case err := <-done:
				unlock()
				t.Fatalf("returned (%v) while a fetch held the mirror", err)
			case <-time.After(500 * time.Millisecond):
			}
			if got, mgot := tc.read(t, bare), tc.read(t, mirror); got != "" || mgot != "" {
				t.Errorf("written while a fetch held the mirror: repository %q, mirror %q", got, mgot)
			}
			unlock()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got, mgot := tc.read(t, bare), tc.read(t, mirror); got != tc.want || mgot != tc.want {
				t.Errorf("after the fetch: repository %q, mirror %q, want %q in both", got, mgot, tc.want)
			}
		})
	}
}
