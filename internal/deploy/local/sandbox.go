package local

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sandboxDataDir is where a sandboxed replica sees its environment's data
// directory.
const sandboxDataDir = "/slipway/data"

// sandboxConfig is what the sandbox helper needs to start a replica inside
// its own mount and PID namespaces, chrooted into the image's files.
type sandboxConfig struct {
	Rootfs  string   `json:"rootfs"`
	DataDir string   `json:"dataDir"`
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Dir     string   `json:"dir"`
	UID     int      `json:"uid"`
	GID     int      `json:"gid"`
	// Probe only checks that the sandbox can be set up, then exits 0.
	Probe bool `json:"probe,omitempty"`
}

// runSandbox runs as PID 1 of a new PID namespace, in a new mount
// namespace: it mounts what the replica needs, chroots into the image's
// files and executes the entrypoint. It never returns.
func runSandbox(raw string) {
	var c sandboxConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		sandboxFail("read sandbox config: %v", err)
	}
	if err := setupSandbox(c); err != nil {
		sandboxFail("%v", err)
	}
	if c.Probe {
		os.Exit(0)
	}
	if err := os.Chdir(c.Dir); err != nil {
		sandboxFail("working directory %s: %v", c.Dir, err)
	}
	if c.UID != 0 || c.GID != 0 {
		if err := syscall.Setgroups(nil); err != nil {
			sandboxFail("setgroups: %v", err)
		}
		if err := syscall.Setgid(c.GID); err != nil {
			sandboxFail("setgid %d: %v", c.GID, err)
		}
		if err := syscall.Setuid(c.UID); err != nil {
			sandboxFail("setuid %d: %v", c.UID, err)
		}
	}
	bin, err := lookPathIn("/", c.Argv[0], c.Env)
	if err != nil {
		sandboxFail("%v", err)
	}
	err = syscall.Exec(bin, c.Argv, c.Env)
	sandboxFail("start %s: %v", c.Argv[0], err)
}

func sandboxFail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "slipway sandbox: "+format+"\n", args...)
	os.Exit(127)
}

func setupSandbox(c sandboxConfig) error {
	r := c.Rootfs
	steps := []struct {
		what                  string
		source, target, fstyp string
		flags                 uintptr
		data                  string
	}{
		{"make mounts private", "", "/", "", syscall.MS_REC | syscall.MS_PRIVATE, ""},
		{"bind the image's files", r, r, "", syscall.MS_BIND | syscall.MS_REC, ""},
		{"mount /proc", "proc", filepath.Join(r, "proc"), "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
		{"mount /tmp", "tmpfs", filepath.Join(r, "tmp"), "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777,size=256m"},
		{"mount /dev", "tmpfs", filepath.Join(r, "dev"), "tmpfs", syscall.MS_NOSUID | syscall.MS_NOEXEC, "mode=755,size=64k"},
	}
	if c.DataDir != "" {
		steps = append(steps, struct {
			what                  string
			source, target, fstyp string
			flags                 uintptr
			data                  string
		}{"bind the data directory", c.DataDir, filepath.Join(r, sandboxDataDir), "", syscall.MS_BIND, ""})
	}
	for _, s := range steps {
		if err := syscall.Mount(s.source, s.target, s.fstyp, s.flags, s.data); err != nil {
			return fmt.Errorf("%s (%s): %w", s.what, s.target, err)
		}
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		host := "/dev/" + d
		if _, err := os.Stat(host); err != nil {
			continue
		}
		target := filepath.Join(r, "dev", d)
		if err := os.WriteFile(target, nil, 0o666); err != nil {
			return fmt.Errorf("create %s: %w", target, err)
		}
		if err := syscall.Mount(host, target, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", host, err)
		}
	}
	for _, f := range []string{"etc/resolv.conf", "etc/hosts"} {
		target := filepath.Join(r, f)
		if fi, err := os.Lstat(target); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if err := syscall.Mount("/"+f, target, "", syscall.MS_BIND, ""); err != nil {
			continue // the image's own copy stays
		}
		_ = syscall.Mount("", target, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, "")
	}
	if err := syscall.Mount("", r, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make the image's files read-only: %w", err)
	}
	if err := syscall.Chroot(r); err != nil {
		return fmt.Errorf("chroot %s: %w", r, err)
	}
	return os.Chdir("/")
}

// lookPathIn finds an executable the way the image's PATH would, with root
// as "/".
func lookPathIn(root, file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !path.IsAbs(p) {
			return p, nil
		}
		return filepath.Join(root, p), nil
	}
	pathVar := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" || !path.IsAbs(dir) {
			continue
		}
		p := filepath.Join(root, dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("entrypoint %q not found in the image's PATH %s", file, pathVar)
}

// imageUser resolves the image's USER (uid[:gid] or a name in the image's
// /etc/passwd) to numeric ids.
func imageUser(rootfs, user string) (uid, gid int, err error) {
	if user == "" {
		return 0, 0, nil
	}
	name, group, _ := strings.Cut(user, ":")
	uid, uerr := strconv.Atoi(name)
	if uerr != nil {
		f, err := os.Open(filepath.Join(rootfs, "etc", "passwd"))
		if err != nil {
			return 0, 0, fmt.Errorf("image user %q: no /etc/passwd in the image to look it up: use a numeric uid", user)
		}
		defer f.Close()
		found := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) >= 4 && fields[0] == name {
				uid, _ = strconv.Atoi(fields[2])
				gid, _ = strconv.Atoi(fields[3])
				found = true
				break
			}
		}
		if !found {
			return 0, 0, fmt.Errorf("image user %q is not in the image's /etc/passwd", user)
		}
	} else {
		gid = uid
	}
	if group != "" {
		g, err := strconv.Atoi(group)
		if err != nil {
			return 0, 0, fmt.Errorf("image user %q: use a numeric group", user)
		}
		gid = g
	}
	return uid, gid, nil
}

// probeSandbox reports whether replicas can get namespaces and a chroot
// here, by setting one up on an empty directory.
func probeSandbox(exe, scratch string) error {
	for _, d := range []string{"proc", "dev", "tmp", sandboxDataDir[1:]} {
		if err := os.MkdirAll(filepath.Join(scratch, d), 0o755); err != nil {
			return err
		}
	}
	cfg, _ := json.Marshal(sandboxConfig{Rootfs: scratch, Probe: true})
	cmd := exec.Command(exe, "local-sandbox-probe")
	cmd.Env = append(os.Environ(), envSandbox+"="+string(cfg))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
