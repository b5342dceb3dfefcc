package local

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sandboxDataDir is where a sandboxed replica sees its environment's data
// directory.
const sandboxDataDir = "/slipway/data"

// sandboxConfig is what the sandbox helper needs to start a replica: in
// its own mount and PID namespaces, on the image's files, in a user
// namespace of its own.
type sandboxConfig struct {
	Rootfs  string   `json:"rootfs"`
	DataDir string   `json:"dataDir"`
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Dir     string   `json:"dir"`
	// UID and GID are the image's user, inside the user namespace.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// IDMap is where the user namespace's ids are on the host.
	IDMap idMap `json:"idMap"`
	// Probe only checks that the sandbox can be set up, then exits 0.
	Probe bool `json:"probe,omitempty"`
}

// confineConfig is what the second stage of the sandbox needs, inside the
// user namespace, to drop what a replica must not have and execute it.
type confineConfig struct {
	Argv  []string `json:"argv"`
	Env   []string `json:"env"`
	Dir   string   `json:"dir"`
	UID   int      `json:"uid"`
	GID   int      `json:"gid"`
	Probe bool     `json:"probe,omitempty"`
}

// Descriptors the sandbox's stages get from their parent.
const (
	// configFD is where the first stage reads its sandboxConfig.
	configFD = 3
	// exeFD is this program, which the second stage is started from;
	// it reads a byte from rootReadyFD once the first stage has left the
	// host's files behind.
	exeFD       = 3
	rootReadyFD = 4
	runningFD   = 5
)

// runSandbox is the first stage of a replica's sandbox. It runs as root of
// the host, as PID 1 of a new PID namespace, in a new mount namespace: it
// mounts what the replica needs and makes the image's files its root
// (pivot_root). Once the supervisor has put it in the replica's cgroups,
// it starts the second stage (this program again, runConfined) in a new
// user namespace, and stays as the namespace's init: it passes signals on
// and exits with the replica's status. It never returns.
func runSandbox() {
	c, err := readSandboxConfig()
	if err != nil {
		sandboxFail("%v", err)
	}
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		sandboxFail("open own executable: %v", err)
	}
	if err := setupSandbox(c); err != nil {
		sandboxFail("%v", err)
	}
	// The second stage is started from this program while the host's
	// files are still there (it is executed through exe), and waits
	// until they are gone: pivot_root moves its root with this one's.
	// (its dynamic loader has loaded what it needs once it says it
	// runs).
	rootReady, ready, err := os.Pipe()
	if err != nil {
		sandboxFail("%v", err)
	}
	running, says, err := os.Pipe()
	if err != nil {
		sandboxFail("%v", err)
	}
	cmd, err := confinedCommand(c, exe, rootReady, says)
	if err != nil {
		sandboxFail("%v", err)
	}
	if err := cmd.Start(); err != nil {
		sandboxFail("start the replica in a user namespace: %v", err)
	}
	exe.Close()
	rootReady.Close()
	says.Close()
	if n, _ := running.Read(make([]byte, 1)); n != 1 {
		cmd.Process.Kill()
		sandboxFail("the replica's second stage did not start: %v", cmd.Wait())
	}
	running.Close()
	if err := enterRoot(c.Rootfs); err != nil {
		cmd.Process.Kill()
		sandboxFail("%v", err)
	}
	ready.Write([]byte{1})
	ready.Close()
	os.Exit(initWait(cmd.Process.Pid))
}

// readSandboxConfig reads the sandbox's configuration from configFD,
// where the supervisor writes it once the process is in the replica's
// cgroup: nothing of the replica runs before.
func readSandboxConfig() (sandboxConfig, error) {
	f := os.NewFile(configFD, "sandbox-config")
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil || len(raw) == 0 {
		return sandboxConfig{}, errNoGoAhead
	}
	var c sandboxConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return sandboxConfig{}, fmt.Errorf("read sandbox config: %w", err)
	}
	return c, nil
}

// confinedCommand is the second stage of the sandbox: this program
// (through exe), in a new user namespace whose ids 0-65535 are c.IDMap's
// range of the host, in a process group of its own. It waits for a byte
// on rootReady before it does anything.
func confinedCommand(c sandboxConfig, exe, rootReady, running *os.File) (*exec.Cmd, error) {
	cc, err := json.Marshal(confineConfig{Argv: c.Argv, Env: c.Env, Dir: c.Dir, UID: c.UID, GID: c.GID, Probe: c.Probe})
	if err != nil {
		return nil, err
	}
	argv0 := "slipway-replica"
	if len(c.Argv) > 0 {
		argv0 = c.Argv[0]
	}
	return &exec.Cmd{
		Path:       fmt.Sprintf("/proc/self/fd/%d", exeFD),
		Args:       []string{argv0},
		Env:        []string{envConfine + "=" + string(cc)},
		Stdin:      nil,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{exe, rootReady, running},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: c.IDMap.UID, Size: idMapSize}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: c.IDMap.GID, Size: idMapSize}},
			GidMappingsEnableSetgroups: true,
			// Root of the namespace (the host's first id of the range),
			// which keeps its capabilities in it across execve.
			Credential: &syscall.Credential{Uid: 0, Gid: 0},
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
		},
	}, nil
}

// initWait is the sandbox's init: it passes the signals a replica is
// stopped with on to child, reaps every process left to it, and returns
// child's exit code (128+N for signal N) once child has exited.
func initWait(child int) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range sigs {
			syscall.Kill(child, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 127
		}
		if pid != child {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// runConfined is the second stage of the sandbox, root of a new user
// namespace: it keeps only replicaCapabilities in the bounding set, takes
// the image's user, sets no_new_privs and the seccomp filter, and executes
// the replica's entrypoint. It never returns.
func runConfined(raw string) {
	runtime.LockOSThread() // capabilities and no_new_privs are per thread
	var c confineConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		sandboxFail("read confinement: %v", err)
	}
	syscall.CloseOnExec(exeFD)
	if err := waitRoot(); err != nil {
		sandboxFail("%v", err)
	}
	if err := dropCapabilities(); err != nil {
		sandboxFail("%v", err)
	}
	if err := syscall.Setgroups(nil); err != nil {
		sandboxFail("setgroups: %v", err)
	}
	if err := syscall.Setgid(c.GID); err != nil {
		sandboxFail("setgid %d: %v", c.GID, err)
	}
	if err := syscall.Setuid(c.UID); err != nil {
		sandboxFail("setuid %d: %v", c.UID, err)
	}
	if err := installSeccomp(); err != nil {
		sandboxFail("%v", err)
	}
	if c.Probe {
		os.Exit(0)
	}
	if err := os.Chdir(c.Dir); err != nil {
		sandboxFail("working directory %s: %v", c.Dir, err)
	}
	bin, err := lookPathIn("/", c.Argv[0], c.Env)
	if err != nil {
		sandboxFail("%v", err)
	}
	err = syscall.Exec(bin, c.Argv, c.Env)
	sandboxFail("start %s: %v", c.Argv[0], err)
}

// waitRoot says the second stage runs, and waits until the first stage has made the image's files the
// root.
func waitRoot() error {
	running := os.NewFile(runningFD, "running")
	running.Write([]byte{1})
	running.Close()
	f := os.NewFile(rootReadyFD, "root-ready")
	defer f.Close()
	var b [1]byte
	if n, _ := f.Read(b[:]); n != 1 {
		return errors.New("the sandbox's root could not be set up")
	}
	return nil
}

// replicaCapabilities are the capabilities a replica whose user is root
// keeps, within its user namespace (over its own files and processes):
// Docker's default set without raw sockets, device nodes, chroot, audit
// and file capabilities. Every other one leaves the bounding set.
var replicaCapabilities = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_KILL, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_NET_BIND_SERVICE,
}

// dropCapabilities removes every capability but replicaCapabilities from
// the bounding set and clears the ambient set: nothing executed from here
// can gain them.
func dropCapabilities() error {
	last := uintptr(unix.CAP_LAST_CAP)
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = uintptr(n)
		}
	}
	for c := uintptr(0); c <= last; c++ {
		if slices.Contains(replicaCapabilities, c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}

func sandboxFail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "slipway sandbox: "+format+"\n", args...)
	os.Exit(127)
}

type mountStep struct {
	what                  string
	source, target, fstyp string
	flags                 uintptr
	data                  string
}

func setupSandbox(c sandboxConfig) error {
	r := c.Rootfs
	steps := []mountStep{
		{"make mounts private", "", "/", "", syscall.MS_REC | syscall.MS_PRIVATE, ""},
		// The namespace's own /proc, where the second stage's id maps
		// are written (until the host's files are left).
		{"mount the namespace's /proc", "proc", "/proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
		{"bind the image's files", r, r, "", syscall.MS_BIND | syscall.MS_REC, ""},
		{"mount /proc", "proc", filepath.Join(r, "proc"), "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
		{"mount /tmp", "tmpfs", filepath.Join(r, "tmp"), "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777,size=256m"},
		{"mount /dev", "tmpfs", filepath.Join(r, "dev"), "tmpfs", syscall.MS_NOSUID | syscall.MS_NOEXEC, "mode=755,size=64k"},
	}
	if c.DataDir != "" {
		steps = append(steps, mountStep{"bind the data directory", c.DataDir, filepath.Join(r, sandboxDataDir), "",
			syscall.MS_BIND, ""})
	}
	for _, s := range steps {
		if err := syscall.Mount(s.source, s.target, s.fstyp, s.flags, s.data); err != nil {
			return fmt.Errorf("%s (%s): %w", s.what, s.target, err)
		}
	}
	if c.DataDir != "" {
		target := filepath.Join(r, sandboxDataDir)
		if err := syscall.Mount("", target, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
			return fmt.Errorf("make the data directory nosuid: %w", err)
		}
	}
	if err := mountDevices(r); err != nil {
		return err
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
	if err := syscall.Mount("", r, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the image's files read-only: %w", err)
	}
	return os.Chdir(r)
}

// mountDevices binds the host's harmless devices into the sandbox's /dev.
func mountDevices(r string) error {
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
	return nil
}

// enterRoot makes r the root of this mount namespace with pivot_root and
// detaches the host's files, so that no chroot escape leads back to them.
func enterRoot(r string) error {
	if err := os.Chdir(r); err != nil {
		return fmt.Errorf("enter %s: %w", r, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %s: %w", r, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's files: %w", err)
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

// probeSandbox reports whether replicas can be sandboxed here, by setting
// a sandbox up on an empty directory, with the replicas' ids.
func probeSandbox(exe, scratch string, ids idMap) error {
	for _, d := range []string{"proc", "dev", "tmp", sandboxDataDir[1:]} {
		if err := os.MkdirAll(filepath.Join(scratch, d), 0o755); err != nil {
			return err
		}
	}
	cfg, err := json.Marshal(sandboxConfig{Rootfs: scratch, Probe: true, IDMap: ids})
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd := exec.Command(exe, "local-sandbox-probe")
	cmd.Env = append(os.Environ(), envSandbox+"=fd")
	cmd.ExtraFiles = []*os.File{pr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pw.Write(cfg)
	pw.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}
