// Package testenv decides what a test does when something it needs is missing
// from the machine: on a developer's laptop it skips and says why; under the
// project's test script (SLIPWAY_TEST_STRICT=1) it fails, so the suite never
// passes by skipping.
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Strict reports whether missing dependencies must fail tests.
func Strict() bool { return os.Getenv("SLIPWAY_TEST_STRICT") == "1" }

// Missing stops the test because a dependency is missing. why names the
// dependency and how to get it (usually: run scripts/test, or scripts/deps).
func Missing(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("required by this test and missing: %s (SLIPWAY_TEST_STRICT=1 forbids skipping)", why)
	}
	t.Skipf("skipped: %s (scripts/test provides it)", why)
}

// LookPath returns the path of an executable, or stops the test through
// Missing when it is not installed.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed (scripts/deps installs it)")
	}
	return p
}

// Env returns the value of an environment variable that points a test at a
// server, or stops the test through Missing when it is unset.
func Env(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, name+" is unset: no "+what+" to test against")
	}
	return v
}

// Git runs git in dir with a fixed identity and date, so that the same
// changes always make the same commits (and so the same images), and
// returns its trimmed output. A failure stops the test.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Slipway Test", "GIT_AUTHOR_EMAIL=test@slipway.dev",
		"GIT_COMMITTER_NAME=Slipway Test", "GIT_COMMITTER_EMAIL=test@slipway.dev",
		"GIT_AUTHOR_DATE=2026-03-01T12:00:00Z", "GIT_COMMITTER_DATE=2026-03-01T12:00:00Z")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// FreeAddr returns a 127.0.0.1 address with a port free at the time of the
// call, below Linux's ephemeral range (32768 and up): a port the kernel
// picked for ":0" could be taken by an outgoing connection of the program
// under test before it listens there. Each test process starts at a
// random port and walks up, so that processes rarely meet.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 32768 - firstPort {
		p := firstPort + int(nextPort.Add(1)%(32768-firstPort))
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatalf("no free port between %d and 32767", firstPort)
	return ""
}

// firstPort is above the ports the local runtime gives replicas (10000–19999).
const firstPort = 20000

var nextPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(rand.Int64N(32768 - firstPort))
	return &n
}()

// SampleAppDir returns the directory of the sample service,
// examples/birthday-app, found above the test's working directory.
func SampleAppDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		app := filepath.Join(dir, "examples", "birthday-app")
		if _, err := os.Stat(filepath.Join(app, "main.go")); err == nil {
			return app
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			Missing(t, "the sample app examples/birthday-app (not found above the test's directory)")
		}
		dir = parent
	}
}

// SampleAppRepo copies the sample service into a new git repository with
// one commit on master, and returns the repository's directory and that
// commit.
func SampleAppRepo(t testing.TB) (dir, commit string) {
	t.Helper()
	LookPath(t, "git")
	dir = filepath.Join(t.TempDir(), "app")
	if err := os.CopyFS(dir, os.DirFS(SampleAppDir(t))); err != nil {
		t.Fatal(err)
	}
	Git(t, dir, "init", "-q", "-b", "master")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "birthday-app")
	return dir, Git(t, dir, "rev-parse", "HEAD")
}
