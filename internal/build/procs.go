package build

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A build's tests and compiler, and a smoke test, run in process groups
// of their own (runLogged). When slipway stops normally it ends them; when
// it is killed (SIGKILL, a crash, the OOM killer) nothing does, and they
// would go on in the build's checkout while the next slipway builds there.
// So each group is recorded while it runs, in procsDir, and the next start
// kills the groups a killed slipway left (Reconcile), and removes the work
// directories of the builds it interrupted.

// procsDir is where the running process groups are recorded.
func procsDir(dataDir string) string { return filepath.Join(dataDir, "work", "procs") }

// trackGroup records process group pgid in dir while it runs; the returned
// function forgets it. An empty dir records nothing.
func trackGroup(dir string, pgid int) func() {
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() {}
	}
	p := filepath.Join(dir, strconv.Itoa(pgid))
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		return func() {}
	}
	return func() { os.Remove(p) }
}

// killLeftGroups kills the process groups recorded in dir, which a slipway
// that was killed left running, waits (up to a few seconds) until they are
// gone, and forgets them. A group is killed only while one of its
// processes works below one of roots: a group id may have been reused
// once its own processes were gone. It returns the groups it killed.
func killLeftGroups(dir string, roots ...string) []int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var killed []int
	for _, e := range ents {
		pgid, err := strconv.Atoi(e.Name())
		if err != nil || pgid <= 1 {
			continue
		}
		if len(groupBelow(pgid, roots)) > 0 {
			syscall.Kill(-pgid, syscall.SIGKILL)
			killed = append(killed, pgid)
			for end := time.Now().Add(5 * time.Second); len(groupBelow(pgid, roots)) > 0 && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
	return killed
}

// groupBelow returns the live processes of group pgid that work below one
// of roots.
func groupBelow(pgid int, roots []string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold anything.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil {
			continue
		}
		for _, r := range roots {
			if cwd == r || strings.HasPrefix(cwd, r+string(filepath.Separator)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// buildWorkDir matches the names of builds' work directories
// (os.MkdirTemp's "ID-SHORT-RANDOM").
var buildWorkDir = regexp.MustCompile(`^[0-9]+-[0-9a-f]{7}-[0-9]+$`)

// removeLeftWork removes the work directories of builds that a killed
// slipway left in root; no build of the app runs while it does.
func removeLeftWork(root string) []string {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		if e.IsDir() && buildWorkDir.MatchString(e.Name()) {
			if os.RemoveAll(filepath.Join(root, e.Name())) == nil {
				removed = append(removed, e.Name())
			}
		}
	}
	return removed
}
