// Package gitsource keeps a mirror of the application's git repository in
// slipway's data directory and makes clean checkouts of single commits. It
// drives the git command-line tool.
package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrUnknownRevision is returned when a branch, tag or commit does not exist
// in the repository.
var ErrUnknownRevision = errors.New("unknown revision")

// ErrUnreachable is returned when the repository cannot be fetched: it does
// not exist, the network or the credentials fail.
var ErrUnreachable = errors.New("repository unreachable")

// MirrorDir is the mirror's directory inside slipway's data directory.
const MirrorDir = "repo.git"

// waitDelay is how long a git process gets between SIGTERM and SIGKILL
// once its context is done.
const waitDelay = 5 * time.Second

// Source is a repository and its local mirror.
type Source struct {
	url string // the repository; local paths are absolute
	dir string // the bare mirror

	// configured is the URL last written to the mirror's remote.origin.url
	// by this process, so that a fetch does not run git config each time.
	configured atomic.Pointer[string]

	refsMu    sync.Mutex
	refRoot   string    // the repository's git directory, for RefsStamp
	refDirs   []string  // the directories under refs, for RefsStamp
	refDirsAt time.Time // when they were listed
}

// New returns the source for the repository at url (a path, file://,
// https://, ssh:// or scp-like URL) mirrored into dir. Nothing is run until
// Fetch.
func New(repoURL, dir string) *Source {
	if isLocalPath(repoURL) {
		if abs, err := filepath.Abs(repoURL); err == nil {
			repoURL = abs
		}
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &Source{url: repoURL, dir: dir}
}

func isLocalPath(u string) bool {
	if strings.Contains(u, "://") {
		return false
	}
	colon, slash := strings.Index(u, ":"), strings.Index(u, "/")
	return colon < 0 || (slash >= 0 && slash < colon)
}

// URL is the repository's URL, with any credentials removed.
func (s *Source) URL() string { return Redact(s.url) }

// Dir is the mirror's directory.
func (s *Source) Dir() string { return s.dir }

// Fetch brings the mirror up to date with every branch and tag of the
// repository, creating it on first use. Branches and tags deleted upstream
// are deleted here too. Errors wrap ErrUnreachable.
func (s *Source) Fetch(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.dir, "HEAD")); err != nil {
		if err := os.MkdirAll(s.dir, 0o755); err != nil {
			return fmt.Errorf("create mirror: %w", err)
		}
		if _, err := run(ctx, "", "init", "--bare", "-q", s.dir); err != nil {
			return fmt.Errorf("create mirror %s: %w", s.dir, err)
		}
	}
	// Another slipway process (serve, a build on the command line) may be
	// fetching into the same mirror: take turns, or git fails to lock refs.
	unlock, err := lockFile(ctx, s.dir+".lock")
	if err != nil {
		return fmt.Errorf("fetch %s: %w", Redact(s.url), err)
	}
	defer unlock()
	if c := s.configured.Load(); c == nil || *c != s.url {
		if _, err := s.Git(ctx, "config", "remote.origin.url", s.url); err != nil {
			return fmt.Errorf("configure mirror: %w", err)
		}
		s.configured.Store(&s.url)
	}
	_, err = s.Git(ctx, "fetch", "--quiet", "--prune", "--prune-tags", "--force", "--no-write-fetch-head", "origin",
		"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
	if err != nil {
		return fmt.Errorf("fetch %s: %w: %w", Redact(s.url), ErrUnreachable, err)
	}
	return nil
}

// lockFile takes an exclusive lock on path (created if needed), waiting
// for other processes that hold it until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for the lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Resolve returns the full commit hash that rev (a branch, tag, full or
// abbreviated commit hash) names in the mirror. Errors wrap
// ErrUnknownRevision when the mirror has no such revision.
func (s *Source) Resolve(ctx context.Context, rev string) (string, error) {
	if rev == "" || strings.HasPrefix(rev, "-") {
		return "", fmt.Errorf("resolve %q: %w: give a branch, tag or commit hash", rev, ErrUnknownRevision)
	}
	out, err := s.Git(ctx, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return "", fmt.Errorf("%q is not a branch, tag or commit of %s: %w", rev, Redact(s.url), ErrUnknownRevision)
		}
		return "", fmt.Errorf("resolve %q: %w", rev, err)
	}
	return strings.TrimSpace(out), nil
}

// CommitTime returns the committer time of a commit.
func (s *Source) CommitTime(ctx context.Context, commit string) (time.Time, error) {
	out, err := s.Git(ctx, "show", "-s", "--format=%ct", commit, "--")
	if err != nil {
		return time.Time{}, fmt.Errorf("time of commit %s: %w", commit, err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("time of commit %s: unexpected git output %q", commit, out)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// Checkout makes dir a git work tree holding exactly commit, detached, with
// nothing else in it. dir may be missing or empty, or a work tree an
// earlier Checkout made: reusing one keeps paths stable, so the Go build
// cache recognises unchanged packages. The work tree borrows the mirror's
// objects, so the mirror must outlive it.
func (s *Source) Checkout(ctx context.Context, commit, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		if _, err := run(ctx, "", "clone", "--quiet", "--shared", "--no-checkout", s.dir, dir); err != nil {
			return fmt.Errorf("check out %s: %w", commit, err)
		}
	}
	if _, err := run(ctx, dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", commit, "--"); err != nil {
		return fmt.Errorf("check out %s: %w", commit, err)
	}
	return Clean(ctx, dir)
}

// Clean puts a checkout back to exactly its commit: files changed or left
// behind (by tests, say) are removed.
func Clean(ctx context.Context, dir string) error {
	if _, err := run(ctx, dir, "reset", "--quiet", "--hard"); err != nil {
		return fmt.Errorf("clean checkout %s: %w", dir, err)
	}
	if _, err := run(ctx, dir, "clean", "-q", "-ffdx"); err != nil {
		return fmt.Errorf("clean checkout %s: %w", dir, err)
	}
	return nil
}

// Git runs git with args in the mirror and returns its standard output.
// It is the way to add operations (branches, tags, pushes) on the mirror.
func (s *Source) Git(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "", append([]string{"--git-dir", s.dir}, args...)...)
}

// run runs git in dir (the current directory when empty). A failure's
// error carries git's message, credentials removed.
func run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_TERMINAL_PROMPT=0", // fail instead of asking for a password
		"LC_ALL=C",
	)
	if os.Getenv("GIT_SSH_COMMAND") == "" {
		cmd.Env = append(cmd.Env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = waitDelay
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("git %s: %w", Redact(strings.Join(args, " ")), ctx.Err())
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return "", &Error{Args: redactAll(args), Err: err}
		}
		return "", &Error{Args: redactAll(args), Stderr: Redact(msg), Err: err}
	}
	return stdout.String(), nil
}

// Error is a failed git command.
type Error struct {
	Args   []string // the arguments, credentials removed
	Stderr string   // what git said, credentials removed
	Err    error    // usually *exec.ExitError
}

func (e *Error) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("git %s: %v", strings.Join(e.Args, " "), e.Err)
	}
	return fmt.Sprintf("git %s: %s (%v)", strings.Join(e.Args, " "), e.Stderr, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func redactAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = Redact(a)
	}
	return out
}

var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@`)

// Redact removes user names, passwords and tokens from every URL in s.
func Redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil && u.Scheme != "" {
		u.User = nil
		return u.String()
	}
	return userinfo.ReplaceAllString(s, "${1}")
}
