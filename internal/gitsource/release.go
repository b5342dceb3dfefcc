package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrBranchMoved is returned by MoveBranch when the remote branch no longer
// points where the caller expected: someone pushed in between.
var ErrBranchMoved = errors.New("branch moved on the remote")

// Head returns the commit branch points at in the mirror, or "" when the
// branch does not exist.
func (s *Source) Head(ctx context.Context, branch string) (string, error) {
	out, err := s.Git(ctx, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return "", nil
		}
		return "", fmt.Errorf("read branch %s: %w", branch, err)
	}
	return strings.TrimSpace(out), nil
}

// Heads returns the commit every branch of the mirror points at, by
// branch name, from one git process.
func (s *Source) Heads(ctx context.Context) (map[string]string, error) {
	out, err := s.Git(ctx, "for-each-ref", "--format=%(objectname) %(refname:lstrip=2)", "refs/heads/")
	if err != nil {
		return nil, fmt.Errorf("read branches: %w", err)
	}
	heads := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if commit, branch, ok := strings.Cut(line, " "); ok {
			heads[branch] = commit
		}
	}
	return heads, nil
}

// IsAncestor reports whether ancestor is reachable from descendant; a commit
// is its own ancestor.
func (s *Source) IsAncestor(ctx context.Context, ancestor, descendant string) (bool, error) {
	_, err := s.Git(ctx, "merge-base", "--is-ancestor", ancestor, descendant)
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, fmt.Errorf("is %s an ancestor of %s: %w", ancestor, descendant, err)
}

// LogEntry is one commit as Log lists it.
type LogEntry struct {
	Hash    string
	Subject string
	Author  string
	Time    time.Time
}

// Log lists the commits reachable from include and not from exclude (all
// of include's history when exclude is ""), newest first, at most limit.
func (s *Source) Log(ctx context.Context, exclude, include string, limit int) ([]LogEntry, error) {
	args := []string{"log", "--format=%H%x00%ct%x00%an%x00%s", "-n", strconv.Itoa(limit), include}
	if exclude != "" {
		args = append(args, "^"+exclude)
	}
	out, err := s.Git(ctx, append(args, "--")...)
	if err != nil {
		return nil, fmt.Errorf("list commits %s..%s: %w", exclude, include, err)
	}
	var list []LogEntry
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\x00", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("list commits: unexpected git output %q", line)
		}
		sec, _ := strconv.ParseInt(f[1], 10, 64)
		list = append(list, LogEntry{Hash: f[0], Time: time.Unix(sec, 0).UTC(), Author: f[2], Subject: f[3]})
	}
	return list, nil
}

// MoveBranch points branch at to, on the repository and in the mirror, only
// when the repository's branch still points at from ("" meaning it must not
// exist yet). It may move the branch backwards (a rollback). When someone
// moved the branch in between, the error wraps ErrBranchMoved.
func (s *Source) MoveBranch(ctx context.Context, branch, from, to string) error {
	// A fetch that read the repository's branches before the push and
	// writes them after would put the mirror's branch back where it was:
	// the push and the mirror's update are made under the fetches' lock.
	unlock, err := lockFile(ctx, s.dir+".lock")
	if err != nil {
		return fmt.Errorf("point %s at %s: %w", branch, short(to), err)
	}
	defer unlock()
	ref := "refs/heads/" + branch
	lease := "--force-with-lease=" + ref + ":" + from
	if _, err := s.Git(ctx, "push", "--quiet", lease, "origin", to+":"+ref); err != nil {
		var ge *Error
		if errors.As(err, &ge) && (strings.Contains(ge.Stderr, "stale info") || strings.Contains(ge.Stderr, "rejected")) {
			return fmt.Errorf("point %s at %s: %w (it is no longer at %s): %w", branch, short(to), ErrBranchMoved, short(from), err)
		}
		return fmt.Errorf("point %s at %s: %w", branch, short(to), err)
	}
	if _, err := s.Git(ctx, "update-ref", ref, to); err != nil {
		return fmt.Errorf("point %s at %s in the mirror: %w", branch, short(to), err)
	}
	return nil
}

// TagRelease puts an annotated tag name with message on commit and pushes
// it to the repository. A tag of that name already on that commit is left
// as it is; on another commit it is an error.
func (s *Source) TagRelease(ctx context.Context, name, commit, message string) error {
	// A poll's fetch prunes the mirror's tags to the remote's: one running
	// between the tag's making and its push would remove it. Fetches take
	// the mirror's lock, so the tag is made and pushed under it.
	unlock, err := lockFile(ctx, s.dir+".lock")
	if err != nil {
		return fmt.Errorf("tag %s: %w", name, err)
	}
	defer unlock()
	if err := s.makeTag(ctx, name, commit, message); err != nil {
		return err
	}
	if _, err := s.Git(ctx, "push", "--quiet", "origin", "refs/tags/"+name+":refs/tags/"+name); err != nil {
		return fmt.Errorf("push tag %s: %w", name, err)
	}
	return nil
}

// makeTag makes the annotated tag name on commit unless it is there.
func (s *Source) makeTag(ctx context.Context, name, commit, message string) error {
	existing, err := s.Git(ctx, "rev-parse", "--verify", "--quiet", "refs/tags/"+name+"^{commit}")
	switch {
	case err == nil && strings.TrimSpace(existing) == commit:
		return nil
	case err == nil:
		return fmt.Errorf("tag %s: it already exists on %s, not on %s", name, short(strings.TrimSpace(existing)), short(commit))
	}
	if _, err := s.Git(ctx, "-c", "user.name=slipway", "-c", "user.email=slipway@localhost",
		"tag", "-a", "-m", message, name, commit); err != nil {
		return fmt.Errorf("tag %s on %s: %w", name, short(commit), err)
	}
	return nil
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	if commit == "" {
		return "(none)"
	}
	return commit
}

// RefsStamp summarises the refs of a repository on this machine (a local
// path or file:// URL) from file metadata alone, without running git: it
// changes whenever a push moves a branch or a tag. ok is false for remote
// repositories, which must be polled with Fetch.
//
// git never rewrites a ref file in place: it writes a lock file and renames
// it over the ref, which changes the directory's time. So the stamp is the
// times of packed-refs, HEAD and the directories under refs, with no
// directory read; the directories are listed again every refDirsEvery, to
// see new ones (a branch named team/x).
func (s *Source) RefsStamp() (stamp string, ok bool, err error) {
	s.refsMu.Lock()
	defer s.refsMu.Unlock()
	if s.refDirs == nil || time.Since(s.refDirsAt) > refDirsEvery {
		dir, ok := s.localDir()
		if !ok {
			return "", false, nil
		}
		s.refRoot = dir
		var dirs []string
		err := filepath.WalkDir(filepath.Join(dir, "refs"), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		if err != nil {
			return "", true, fmt.Errorf("read refs of %s: %w", dir, err)
		}
		s.refDirs, s.refDirsAt = dirs, time.Now()
	}
	dir := s.refRoot
	var b strings.Builder
	for _, p := range append([]string{filepath.Join(dir, "packed-refs"), filepath.Join(dir, "HEAD")}, s.refDirs...) {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s %d %d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String(), true, nil
}

// refDirsEvery is how often RefsStamp lists the directories under refs.
const refDirsEvery = 5 * time.Second

// localDir is the repository's git directory when it is on this machine.
func (s *Source) localDir() (string, bool) {
	u := s.url
	if strings.HasPrefix(u, "file://") {
		u = strings.TrimPrefix(u, "file://")
	} else if !isLocalPath(u) {
		return "", false
	}
	if fi, err := os.Stat(filepath.Join(u, ".git")); err == nil && fi.IsDir() {
		return filepath.Join(u, ".git"), true
	}
	return u, true
}
