package local

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Replicas listen on ports of 127.0.0.1 below the kernel's ephemeral range.
// A port of that range can be taken by any outgoing connection (the load
// balancer's own, a client's) between the moment it is found free and the
// moment the replica binds it, or while the replica restarts: the replica
// would then fail with "address already in use" at every restart and be
// reported crash-looping. No connection is given a port below the range
// unless it asks for it.
const (
	replicaPortLow  = 10000
	replicaPortHigh = 20000 // exclusive
)

// replicaPort returns a port of 127.0.0.1 that nothing listens on, from
// [replicaPortLow, replicaPortHigh) clipped to below the ephemeral range.
// When that range is empty (a machine whose ephemeral range starts very
// low) it falls back to a port the kernel chooses.
func replicaPort() (int, error) {
	lo, hi := replicaPortLow, replicaPortHigh
	if eph, ok := ephemeralLow(); ok && eph < hi {
		hi = eph
	}
	for range 200 {
		if hi <= lo {
			break
		}
		p := lo + rand.IntN(hi-lo)
		if free(p) {
			return p, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// free reports whether port of 127.0.0.1 can be listened on now.
func free(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	var low, high int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &low, &high); err != nil || low <= 0 {
		return 0, false
	}
	return low, true
}
