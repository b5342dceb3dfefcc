package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// sandboxLaunch is what a sandboxed replica's process needs from the
// supervisor once it has started: its cgroup, then its configuration
// through the pipe it waits on. Only the replica's own supervision uses
// it.
type sandboxLaunch struct {
	config []byte
	pipe   *os.File // the supervisor's end
	child  *os.File // the process's end, closed here once it started
}

// sandboxCommand builds the process of a sandboxed replica: the sandbox's
// first stage (this program), in new mount and PID namespaces, which reads
// cfg from a pipe once the supervisor put it in its cgroup (see started).
// The replica's files are given to the replicas' ids first.
func (s *supervisor) sandboxCommand(r *replica, cfg sandboxConfig) (*exec.Cmd, error) {
	if err := shiftImage(filepath.Dir(cfg.Rootfs), s.ids); err != nil {
		return nil, err
	}
	if err := ownDataDir(cfg.DataDir, s.ids, cfg.UID, cfg.GID); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start replica: %w", err)
	}
	if r.launch != nil {
		r.launch.pipe.Close()
		r.launch.child.Close()
	}
	r.launch = &sandboxLaunch{config: raw, pipe: pw, child: pr}
	cmd := exec.Command(s.exe, "local-sandbox", r.name)
	cmd.Env = []string{envSandbox + "=fd"}
	cmd.ExtraFiles = []*os.File{pr}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd, nil
}

// started puts a sandboxed replica's process in the replica's cgroup
// (made with its spec's limits on its first start) and hands it its
// configuration. The explanation it returns tells an exit the kernel
// caused by going over the memory limit.
func (s *supervisor) started(r *replica, cmd *exec.Cmd) (func(error) error, error) {
	l := r.launch
	if l == nil {
		return func(err error) error { return err }, nil
	}
	r.launch = nil
	l.child.Close()
	defer l.pipe.Close()
	var cg *replicaCgroup
	if s.cgroups != nil {
		var err error
		if cg, err = s.replicaCgroup(r); err != nil {
			return nil, err
		}
		if err := cg.add(cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	if _, err := l.pipe.Write(l.config); err != nil {
		return nil, fmt.Errorf("configure the replica's sandbox: %w", err)
	}
	if cg == nil {
		return func(err error) error { return err }, nil
	}
	before := cg.oomKills()
	return func(err error) error {
		if cg.oomKills() > before && cg.limits.Memory > 0 {
			return fmt.Errorf("killed: out of memory (limit %s)", formatBytes(cg.limits.Memory))
		}
		return err
	}, nil
}

// replicaCgroup returns r's cgroup, made with its spec's limits.
func (s *supervisor) replicaCgroup(r *replica) (*replicaCgroup, error) {
	if r.cgroup != nil {
		return r.cgroup, nil
	}
	res := r.rev.spec.Resources
	cg, err := s.cgroups.replica(r.name, replicaLimits{Memory: res.MemoryBytes, CPU: res.MilliCPU, Pids: res.Pids})
	if err != nil {
		return nil, err
	}
	r.cgroup = cg
	return cg, nil
}

// finished removes what r's processes had of their own.
func (s *supervisor) finished(r *replica) {
	if r.launch != nil {
		r.launch.pipe.Close()
		r.launch.child.Close()
		r.launch = nil
	}
	if r.cgroup != nil {
		r.cgroup.remove()
		r.cgroup = nil
	}
}

// errNoGoAhead is what a sandbox reads when its supervisor closed the
// pipe without configuring it.
var errNoGoAhead = errors.New("the supervisor did not configure the replica's sandbox (its cgroup could not be set up)")
