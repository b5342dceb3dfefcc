package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/gitsource"
)

// The smoke tests run like the tests before a build: a command in a clean
// checkout of the commit, its output in a log file; but against a running
// environment, after its rollout.

// Smoker runs each environment's smoke-test command (through
// /bin/sh -c) in a clean checkout of the commit, with SLIPWAY_URL set.
type Smoker struct {
	Source *gitsource.Source
	Config *config.Config
	// Dir holds the checkouts (Dir/smoke/…) and logs (Dir/logs/smoke/…).
	Dir string
}

// Smoke runs env's smoke test against url; no command means no test.
func (s Smoker) Smoke(ctx context.Context, env, commit, url string) error {
	e, ok := s.Config.Environment(env)
	if !ok || strings.TrimSpace(e.Smoke.Command) == "" {
		return nil
	}
	work := filepath.Join(s.Dir, "smoke", env)
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("smoke test: clear %s: %w", work, err)
	}
	if err := os.MkdirAll(filepath.Dir(work), 0o755); err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	if err := s.Source.Checkout(ctx, commit, work); err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	logDir := filepath.Join(s.Dir, "logs", "smoke")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	logPath := filepath.Join(logDir, env+"-"+commit+".log")
	timeout := e.Smoke.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", e.Smoke.Command)
	cmd.Dir = work
	// Compiled as the tests before the build were: the packages they
	// compiled are reused.
	cmd.Env = append(likeTheBuild(os.Environ(), e.Smoke.Command), "SLIPWAY_URL="+url, "SLIPWAY_ENV="+env, "SLIPWAY_COMMIT="+commit)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	if err == nil {
		forget := trackGroup(procsDir(s.Dir), cmd.Process.Pid)
		err = cmd.Wait()
		forget()
	}
	_ = os.WriteFile(logPath, out.Bytes(), 0o644)
	if err != nil {
		if cctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return fmt.Errorf("%q: %w; last lines (full log %s):\n%s", e.Smoke.Command, err, logPath, tail(out.String(), 15))
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
