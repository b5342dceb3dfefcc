package local

import (
	"net"
	"strconv"
	"testing"
)

func TestReplicaPortIsBelowTheEphemeralRange(t *testing.T) {
	eph, ok := ephemeralLow()
	if !ok {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range here")
	}
	if eph <= replicaPortLow {
		t.Skipf("the ephemeral range starts at %d, below the replicas' range", eph)
	}
	for range 50 {
		p, err := replicaPort()
		if err != nil {
			t.Fatal(err)
		}
		if p < replicaPortLow || p >= min(replicaPortHigh, eph) {
			t.Fatalf("replicaPort() = %d, want in [%d, %d)", p, replicaPortLow, min(replicaPortHigh, eph))
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("replicaPort() = %d, which cannot be listened on: %v", p, err)
		}
		ln.Close()
	}
}

func TestReplicaPortSkipsPortsInUse(t *testing.T) {
	// Hold most of the range's first ports; replicaPort must never return
	// one of them.
	held := map[int]bool{}
	for p := replicaPortLow; p < replicaPortLow+200; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		defer ln.Close()
		held[p] = true
	}
	for range 200 {
		p, err := replicaPort()
		if err != nil {
			t.Fatal(err)
		}
		if held[p] {
			t.Fatalf("replicaPort() = %d, which is in use", p)
		}
	}
}

// freePort returns a port of 127.0.0.1 the kernel finds free, for a test's
// own listeners.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
