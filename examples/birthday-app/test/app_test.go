//go:build integration

// Package test holds the black-box suites: they build the real birthday-app
// binary from a git copy of this module and talk to it over HTTP, on SQLite,
// MariaDB and PostgreSQL (see internal/dbtest for the servers).
package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	// binary is the service built from a git commit of this module; commit
	// is that commit. moduleRoot is this module's source directory.
	binary, commit, moduleRoot string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	moduleRoot = root
	dir, err := os.MkdirTemp("", "birthday-app-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary, commit, err = buildFromGit(root, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build birthday-app:", err)
		return 1
	}
	return m.Run()
}

// buildFromGit copies the module into a new git repository under dir, commits
// it, and builds it there with VCS stamping on, as a team's own repository
// would be built. It returns the binary and the commit.
func buildFromGit(root, dir string) (bin, rev string, err error) {
	src := filepath.Join(dir, "src")
	if err := copyTree(root, src); err != nil {
		return "", "", err
	}
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=master"}, args...)...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"commit", "-q", "-m", "birthday-app under test"}} {
		if _, err := git(args...); err != nil {
			return "", "", err
		}
	}
	if rev, err = git("rev-parse", "HEAD"); err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "birthday-app")
	if err := goBuild(src, bin, "-buildvcs=true"); err != nil {
		return "", "", err
	}
	return bin, rev, nil
}

func goBuild(dir, out string, flags ...string) error {
	args := append([]string{"build", "-o", out}, flags...)
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	// This machine's GOFLAGS may turn VCS stamping off; the flags above decide.
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !d.Type().IsRegular() || strings.Contains(d.Name(), ".db") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
}

// app is one running birthday-app process.
type app struct {
	t   *testing.T
	URL string
	cmd *exec.Cmd

	addr   chan string
	exited chan struct{}
	mu     sync.Mutex
	logs   bytes.Buffer
	err    error // from Wait, once exited is closed
}

// launch starts the binary on 127.0.0.1 with a free port, against dbURL,
// with extra flags. Call waitReady before using URL.
func launch(t *testing.T, bin, dbURL string, args ...string) *app {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-host", "127.0.0.1", "-port", "0", "-database-url", dbURL}, args...)...)
	cmd.Dir = t.TempDir()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	a := &app{t: t, cmd: cmd, addr: make(chan string, 1), exited: make(chan struct{})}
	go a.readLogs(stderr)
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-a.exited:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				<-a.exited
				t.Errorf("birthday-app did not stop within a minute of SIGTERM; logs:\n%s", a.Logs())
			}
		}
		if strings.Contains(a.Logs(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in birthday-app:\n%s", a.Logs())
		}
	})
	return a
}

func (a *app) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		a.mu.Lock()
		a.logs.WriteString(line + "\n")
		a.mu.Unlock()
		if !sent {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				a.addr <- l.Addr
				sent = true
			}
		}
	}
	io.Copy(io.Discard, r)
	err := a.cmd.Wait()
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
	close(a.exited)
}

// Logs returns what the process wrote to stderr so far.
func (a *app) Logs() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.String()
}

// waitListening waits until the process logs its address.
func (a *app) waitListening() {
	a.t.Helper()
	select {
	case addr := <-a.addr:
		a.URL = "http://" + addr
	case <-a.exited:
		a.t.Fatalf("birthday-app exited before listening (%v); logs:\n%s", a.err, a.Logs())
	case <-time.After(2 * time.Minute):
		a.t.Fatalf("birthday-app did not start listening within 2 minutes; logs:\n%s", a.Logs())
	}
}

// start launches the binary built from git and waits until it listens.
func start(t *testing.T, dbURL string, args ...string) *app {
	t.Helper()
	a := launch(t, binary, dbURL, args...)
	a.waitListening()
	return a
}

// stop sends SIGTERM and returns the process's exit error.
func (a *app) stop() error {
	a.t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	return a.wait()
}

func (a *app) wait() error {
	a.t.Helper()
	select {
	case <-a.exited:
	case <-time.After(2 * time.Minute):
		a.t.Fatalf("birthday-app did not exit; logs:\n%s", a.Logs())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

var client = &http.Client{Timeout: 30 * time.Second}

type result struct {
	Code  int
	Allow string
	Body  string
}

// call makes one request and returns its status, Allow header and body.
func call(t *testing.T, method, url, body string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	if ct := resp.Header.Get("Content-Type"); len(b) > 0 && !strings.HasPrefix(ct, "application/json") && !strings.HasSuffix(url, "/metrics") {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, url, ct)
	}
	return result{Code: resp.StatusCode, Allow: resp.Header.Get("Allow"), Body: string(b)}
}

// bornDaysAhead returns a date of birth 20 years back whose birthday is n
// days after today (in zone loc): the same month and day as today+n, with
// leap years kept, since 20 is a multiple of 4.
func bornDaysAhead(today time.Time, n int) string {
	d := today.AddDate(0, 0, n)
	return fmt.Sprintf("%04d-%02d-%02d", d.Year()-20, d.Month(), d.Day())
}

func todayIn(loc *time.Location) time.Time {
	y, m, d := time.Now().In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
