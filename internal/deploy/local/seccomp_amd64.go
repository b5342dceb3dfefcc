package local

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// foreignSyscallBit marks x32 system calls, refused.
	foreignSyscallBit = 0x40000000
	// cloneFlagsArg is the argument of clone that holds its flags.
	cloneFlagsArg = 0
)

var archDeniedSyscalls = []uintptr{
	unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_USELIB, unix.SYS__SYSCTL,
	unix.SYS_CREATE_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE, unix.SYS_NFSSERVCTL,
	unix.SYS_LOOKUP_DCOOKIE,
}
