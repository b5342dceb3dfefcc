package local

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter of a sandboxed replica is a denylist: every system
// call is allowed except those that administer the machine rather than
// serve an application (mounts, modules, reboot, kexec, swap, clocks,
// keyrings, bpf, ptrace and reading other processes' memory, new
// namespaces). They fail with EPERM; clone3 fails with ENOSYS, so that
// C libraries and Go fall back to clone, whose namespace flags are
// checked. Other architectures' calls (x32 on amd64, a foreign audit
// arch) kill the process.

// seccomp return actions (linux/seccomp.h).
const (
	seccompRetKillProcess = 0x80000000
	seccompRetErrno       = 0x00050000
	seccompRetAllow       = 0x7fff0000
)

// cloneNamespaces are clone's flags that create namespaces.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// deniedSyscalls fail with EPERM in a sandboxed replica (with those of
// archDeniedSyscalls).
var deniedSyscalls = []uintptr{
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
	unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOVE_MOUNT,
	unix.SYS_OPEN_TREE, unix.SYS_MOUNT_SETATTR,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_REBOOT,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD, unix.SYS_FANOTIFY_INIT,
	unix.SYS_UNSHARE, unix.SYS_SETNS,
	unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT,
	unix.SYS_ACCT, unix.SYS_QUOTACTL, unix.SYS_SYSLOG, unix.SYS_VHANGUP,
	unix.SYS_SETTIMEOFDAY, unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX,
	unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
}

// bpfProgram assembles classic BPF with symbolic jump targets.
type bpfProgram struct {
	ins    []unix.SockFilter
	labels map[string]int
	// fixups are jumps to labels: instruction index, label, and whether
	// the label is the true (jt) or false (jf) branch.
	fixups []bpfFixup
}

type bpfFixup struct {
	at    int
	label string
	jt    bool
}

func (p *bpfProgram) stmt(code uint16, k uint32) {
	p.ins = append(p.ins, unix.SockFilter{Code: code, K: k})
}

// jump appends a conditional jump to label when the test holds, falling
// through otherwise.
func (p *bpfProgram) jump(code uint16, k uint32, label string) {
	p.fixups = append(p.fixups, bpfFixup{at: len(p.ins), label: label, jt: true})
	p.stmt(code, k)
}

func (p *bpfProgram) label(name string) { p.labels[name] = len(p.ins) }

func (p *bpfProgram) resolve() ([]unix.SockFilter, error) {
	for _, f := range p.fixups {
		to, ok := p.labels[f.label]
		off := to - f.at - 1
		if !ok || off < 0 || off > 255 {
			return nil, fmt.Errorf("seccomp filter: bad jump to %s", f.label)
		}
		p.ins[f.at].Jt = uint8(off)
	}
	return p.ins, nil
}

// seccompFilter returns the replica's filter for this architecture.
func seccompFilter() ([]unix.SockFilter, error) {
	const (
		ldw  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	p := &bpfProgram{labels: map[string]int{}}
	p.stmt(ldw, 4) // seccomp_data.arch
	p.jump(jeq, auditArch, "native")
	p.stmt(ret, seccompRetKillProcess)
	p.label("native")
	p.stmt(ldw, 0) // seccomp_data.nr
	if foreignSyscallBit != 0 {
		p.jump(jge, foreignSyscallBit, "kill")
	}
	for _, nr := range append(slicesClone(deniedSyscalls), archDeniedSyscalls...) {
		p.jump(jeq, uint32(nr), "deny")
	}
	p.jump(jeq, unix.SYS_CLONE, "clone")
	p.jump(jeq, unix.SYS_CLONE3, "enosys")
	p.stmt(ret, seccompRetAllow)
	p.label("clone")
	p.stmt(ldw, 16+cloneFlagsArg*8) // low half of the flags argument (little-endian)
	p.jump(jset, cloneNamespaces, "deny")
	p.stmt(ret, seccompRetAllow)
	p.label("deny")
	p.stmt(ret, seccompRetErrno|uint32(unix.EPERM))
	p.label("enosys")
	p.stmt(ret, seccompRetErrno|uint32(unix.ENOSYS))
	p.label("kill")
	p.stmt(ret, seccompRetKillProcess)
	return p.resolve()
}

func slicesClone(s []uintptr) []uintptr { return append([]uintptr(nil), s...) }

// installSeccomp sets no_new_privs and the replica's filter on every
// thread of this process; it is kept across execve. The caller has locked
// its OS thread.
func installSeccomp() error {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	ins, err := seccompFilter()
	if err != nil {
		return err
	}
	prog := unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(ins)
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	return nil
}
