package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestLeftGroupsKilled: the process groups a killed slipway left running
// in its build directories are killed at the next start, those elsewhere
// are not, and the records go.
func TestLeftGroupsKilled(t *testing.T) {
	data := t.TempDir()
	work := filepath.Join(data, "work", "app.src")
	elsewhere := t.TempDir()
	for _, d := range []string{work, elsewhere} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	start := func(dir string) *exec.Cmd {
		// A shell and its child, as a test command runs: both must go.
		cmd := exec.Command("/bin/sh", "-c", "sleep 60 & wait")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
		trackGroup(procsDir(data), cmd.Process.Pid) // never forgotten: the slipway that ran it was killed
		return cmd
	}
	left, other := start(work), start(elsewhere)
	exited := make(chan error, 1)
	go func() { exited <- left.Wait() }()

	killed := killLeftGroups(procsDir(data), filepath.Join(data, "work"))
	if !slices.Equal(killed, []int{left.Process.Pid}) {
		t.Errorf("killed groups %v, want [%d] (not %d, which works elsewhere)", killed, left.Process.Pid, other.Process.Pid)
	}
	if err := <-exited; err == nil {
		t.Error("the left group's shell exited normally, want killed")
	}
	if n := groupBelow(left.Process.Pid, []string{filepath.Join(data, "work")}); len(n) > 0 {
		t.Errorf("processes of the killed group still run: %v", n)
	}
	if err := syscall.Kill(other.Process.Pid, 0); err != nil {
		t.Errorf("the group working elsewhere was killed: %v", err)
	}
	if ents, _ := os.ReadDir(procsDir(data)); len(ents) != 0 {
		t.Errorf("records left: %v", ents)
	}
}

func TestRemoveLeftWork(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"12-abcdef0-123456", "app.src", "procs", "7-0123456-99"} {
		os.MkdirAll(filepath.Join(root, d, "src"), 0o755)
	}
	os.WriteFile(filepath.Join(root, "app.src.lock"), nil, 0o644)
	removed := removeLeftWork(root)
	slices.Sort(removed)
	if want := []string{"12-abcdef0-123456", "7-0123456-99"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	var left []string
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if want := []string{"app.src", "app.src.lock", "procs"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}
