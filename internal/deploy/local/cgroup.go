package local

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// replicaLimits are what one replica may use: bytes of memory (RAM, and no
// swap), thousandths of a CPU, and processes and threads. Zero is no
// limit.
type replicaLimits struct {
	Memory int64
	CPU    int64
	Pids   int64
}

// cgroupControllers are the controllers replicas are limited with.
var cgroupControllers = []string{"memory", "cpu", "pids"}

// cgroupRoot is where an environment's replicas get their cgroups: with
// cgroup v2, one directory in the unified hierarchy; with v1, one per
// controller hierarchy. Each replica's cgroup is a directory of its name
// in each.
type cgroupRoot struct {
	v2   bool
	dirs []string // the environment's directories: one (v2), or one per controller (v1)
	// memDir is the directory of dirs under the memory controller.
	memDir string
}

const cgroupFS = "/sys/fs/cgroup"

// newCgroupRoot makes the environment's cgroups, named name, under the
// cgroups this process is in: v1 when the memory controller is mounted as
// a v1 hierarchy (v1 or hybrid machines), v2 otherwise.
func newCgroupRoot(name string) (*cgroupRoot, error) {
	v1, err := v1Hierarchies()
	if err != nil {
		return nil, err
	}
	if _, ok := v1["memory"]; ok {
		return newCgroupRootV1(name, v1)
	}
	return newCgroupRootV2(name)
}

// v1Hierarchies maps each v1 controller mounted to where this process's
// cgroup of it is.
func v1Hierarchies() (map[string]string, error) {
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	dirs := map[string]string{}
	for ctl, mnt := range mounts {
		if p, ok := own[ctl]; ok {
			dirs[ctl] = filepath.Join(mnt, p)
		}
	}
	return dirs, nil
}

// v1Mounts maps v1 controllers to their mount points, from
// /proc/self/mountinfo.
func v1Mounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(after) < 3 || after[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(after[2], ",") {
			if slices.Contains(cgroupControllers, opt) {
				out[opt] = fields[4]
			}
		}
	}
	return out, sc.Err()
}

// ownCgroups maps each controller (v1) and "" (v2) to this process's
// cgroup path, from /proc/self/cgroup.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			out[ctl] = parts[2]
		}
	}
	return out, nil
}

func newCgroupRootV1(name string, hier map[string]string) (*cgroupRoot, error) {
	c := &cgroupRoot{}
	for _, ctl := range cgroupControllers {
		parent, ok := hier[ctl]
		if !ok {
			return nil, fmt.Errorf("cgroup v1: the %s controller is not mounted", ctl)
		}
		dir := filepath.Join(parent, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v1: %w", err)
		}
		c.dirs = append(c.dirs, dir)
		if ctl == "memory" {
			c.memDir = dir
		}
	}
	return c, nil
}

// newCgroupRootV2 makes DIR/slipway/name in the unified hierarchy, with
// the controllers enabled down to it. It is not under this process's own
// cgroup, which holds a process and so cannot give controllers to
// children (v2's rule of no internal processes).
func newCgroupRootV2(name string) (*cgroupRoot, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupFS, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, errors.New("no cgroup v1 memory controller, and /sys/fs/cgroup is not cgroup v2")
	}
	avail, err := os.ReadFile(filepath.Join(cgroupFS, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	var enable []string
	for _, ctl := range cgroupControllers {
		if !slices.Contains(strings.Fields(string(avail)), ctl) {
			return nil, fmt.Errorf("cgroup v2: the %s controller is not available", ctl)
		}
		enable = append(enable, "+"+ctl)
	}
	dir := cgroupFS
	for _, part := range []string{"slipway", name} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644); err != nil {
			return nil, fmt.Errorf("cgroup v2: enable controllers in %s: %w", dir, err)
		}
		dir = filepath.Join(dir, part)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v2: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644); err != nil {
		return nil, fmt.Errorf("cgroup v2: enable controllers in %s: %w", dir, err)
	}
	return &cgroupRoot{v2: true, dirs: []string{dir}, memDir: dir}, nil
}

// version names the hierarchy for status and logs.
func (c *cgroupRoot) version() string {
	if c.v2 {
		return "cgroup v2"
	}
	return "cgroup v1"
}

// replicaCgroup is one replica's cgroup.
type replicaCgroup struct {
	root   *cgroupRoot
	dirs   []string
	limits replicaLimits
}

// replica makes (or reuses) the cgroup of the replica named name with lim.
func (c *cgroupRoot) replica(name string, lim replicaLimits) (*replicaCgroup, error) {
	rc := &replicaCgroup{root: c, limits: lim}
	for _, d := range c.dirs {
		dir := filepath.Join(d, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create cgroup of %s: %w", name, err)
		}
		rc.dirs = append(rc.dirs, dir)
	}
	if err := rc.setLimits(); err != nil {
		return nil, fmt.Errorf("limit replica %s: %w", name, err)
	}
	return rc, nil
}

// setLimits writes the replica's limits to its cgroup files.
func (rc *replicaCgroup) setLimits() error {
	lim := rc.limits
	num := func(n int64) string {
		if n <= 0 {
			if rc.root.v2 {
				return "max"
			}
			return "-1"
		}
		return strconv.FormatInt(n, 10)
	}
	var files [][2]string
	if rc.root.v2 {
		cpu := "max 100000"
		if lim.CPU > 0 {
			cpu = fmt.Sprintf("%d 100000", lim.CPU*100)
		}
		files = [][2]string{{"memory.max", num(lim.Memory)}, {"memory.swap.max", "0"}, {"cpu.max", cpu}, {"pids.max", num(lim.Pids)}}
	} else {
		cpu := "-1"
		if lim.CPU > 0 {
			cpu = strconv.FormatInt(lim.CPU*100, 10)
		}
		// memsw (memory and swap) may never be below memory: lift it
		// first, so that a cgroup reused with a higher limit takes it.
		files = [][2]string{{"memory.memsw.limit_in_bytes", "-1"}, {"memory.limit_in_bytes", num(lim.Memory)},
			{"memory.memsw.limit_in_bytes", num(lim.Memory)},
			{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", cpu}, {"pids.max", num(lim.Pids)}}
		if lim.Pids <= 0 {
			files[len(files)-1][1] = "max"
		}
	}
	for _, f := range files {
		if err := rc.write(f[0], f[1]); err != nil {
			return err
		}
	}
	return nil
}

// write writes value to the file of that name in whichever of the
// replica's directories has it. memory.memsw.* and memory.swap.max are
// missing without swap accounting, which is fine: then there is no swap
// to limit.
func (rc *replicaCgroup) write(file, value string) error {
	for _, d := range rc.dirs {
		p := filepath.Join(d, file)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("%s = %s: %w", file, value, err)
		}
		return nil
	}
	if strings.Contains(file, "swap") || strings.Contains(file, "memsw") {
		return nil
	}
	return fmt.Errorf("%s: no such cgroup file", file)
}

// add puts the process pid (with the children it will have) in the
// replica's cgroup.
func (rc *replicaCgroup) add(pid int) error {
	for _, d := range rc.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("put replica in cgroup %s: %w", d, err)
		}
	}
	return nil
}

// oomKills counts the processes of the replica's cgroup the kernel killed
// for going over its memory limit.
func (rc *replicaCgroup) oomKills() int64 {
	file := "memory.oom_control"
	if rc.root.v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(rc.root.memDir, filepath.Base(rc.dirs[0]), file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes the replica's cgroup once its processes are gone (they
// may take a moment to leave it after they were reaped).
func (rc *replicaCgroup) remove() {
	for _, d := range rc.dirs {
		for i := 0; i < 50; i++ {
			if err := os.Remove(d); err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// removeAll deletes the environment's cgroups and what replicas left in
// them (a supervisor that was killed).
func (c *cgroupRoot) removeAll() {
	for _, d := range c.dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() {
				os.Remove(filepath.Join(d, e.Name()))
			}
		}
		os.Remove(d)
	}
}

// formatBytes renders n bytes for people: 64 MiB, 1.5 GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTPE"[exp]) + "iB"
}
