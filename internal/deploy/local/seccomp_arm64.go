package local

import "golang.org/x/sys/unix"

const (
	auditArch         = unix.AUDIT_ARCH_AARCH64
	foreignSyscallBit = 0
	cloneFlagsArg     = 0
)

var archDeniedSyscalls = []uintptr{unix.SYS_NFSSERVCTL, unix.SYS_LOOKUP_DCOOKIE}
