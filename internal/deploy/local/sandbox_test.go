package local

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/deploy"
)

// probeResult is what the fixture's /probe reports from inside a replica.
type probeResult struct {
	UID, GID, PID                int
	Mount, Unshare, Chroot, Kill string
	Kill1                        string
	Pids                         []int
	Stat                         map[string]string
	WriteData, WriteRoot         string
	CapEff, CapBnd, NoNewPrivs   string
	Seccomp                      string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root (namespaces, pivot_root, cgroups): run the tests as root, as CI does")
	}
}

// TestSandboxConfines checks, from inside a replica whose image user is
// root, what the sandbox forbids, and from the host, that the replica's
// root is an unprivileged id.
func TestSandboxConfines(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	d := deployFixture(t, "box", 1)
	st := d.status(t)
	if st.Isolation != deploy.IsolationSandbox {
		t.Fatalf("isolation = %q, want %q; supervisor log: %s", st.Isolation, deploy.IsolationSandbox,
			strings.Join(lastLines(d.b.ownDir("box")+"/supervisor.log", 5), "\n"))
	}
	raw, err := os.ReadFile(filepath.Join(d.b.ownDir("box"), "supervisor.pid"))
	if err != nil {
		t.Fatal(err)
	}
	supervisor := strings.TrimSpace(string(raw))
	q := url.Values{"kill": {supervisor}, "stat": {d.b.dir, "/app/fixture", "/slipway/data"}}
	_, body := httpGet(t, st.URL+"/probe?"+q.Encode())
	var p probeResult
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("probe answered %q: %v", body, err)
	}
	t.Logf("inside the replica: %+v", p)
	if p.UID != 0 {
		t.Errorf("uid inside = %d, want 0 (the image's root)", p.UID)
	}
	for what, got := range map[string]string{"mount": p.Mount, "unshare": p.Unshare, "chroot": p.Chroot,
		"signal the supervisor": p.Kill, "signal the sandbox's init": p.Kill1, "write the image's files": p.WriteRoot,
		"see the host's files": p.Stat[d.b.dir]} {
		if got == "ok" {
			t.Errorf("a replica could %s", what)
		}
	}
	for what, got := range map[string]string{"write its data directory": p.WriteData, "see its image": p.Stat["/app/fixture"]} {
		if got != "ok" {
			t.Errorf("a replica could not %s: %s", what, got)
		}
	}
	if len(p.Pids) > 2 {
		t.Errorf("the replica sees processes %v, want only its own and its sandbox's init", p.Pids)
	}
	// Bounding set: chown, dac_override, fowner, fsetid, kill, setgid,
	// setuid, net_bind_service.
	if want := fmt.Sprintf("%016x", 0x4fb); p.CapBnd != want {
		t.Errorf("capability bounding set = %s, want %s", p.CapBnd, want)
	}
	if p.NoNewPrivs != "1" || p.Seccomp != "2" {
		t.Errorf("NoNewPrivs = %q, Seccomp = %q, want 1 and 2 (filter)", p.NoNewPrivs, p.Seccomp)
	}
	ids, err := replicaIDMap()
	if err != nil {
		t.Fatal(err)
	}
	if uid := hostUIDOfApp(t, st.Instances[0].PID); uid != ids.UID {
		t.Errorf("the replica's root is uid %d on the host, want %d", uid, ids.UID)
	}
}

// hostUIDOfApp is the host's uid of the child of the sandbox's init pid.
func hostUIDOfApp(t *testing.T, initPid int) int {
	t.Helper()
	// Any thread of the init (a Go program) may have started it.
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", initPid))
	var kids []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		kids = append(kids, strings.Fields(string(b))...)
	}
	if len(kids) != 1 {
		t.Fatalf("children of the sandbox's init %d: %q, want one", initPid, kids)
	}
	status, err := os.ReadFile("/proc/" + kids[0] + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid, _ := strconv.Atoi(strings.Fields(v)[0])
			return uid
		}
	}
	t.Fatal("no Uid in the replica's status")
	return -1
}
