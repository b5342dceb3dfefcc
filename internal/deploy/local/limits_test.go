//go:build integration

package local

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/deploy"
)

// TestOutOfMemoryRestarts runs a replica with a memory limit of 64 MiB,
// has it take 200 MiB, and checks that the kernel killed it, that it was
// restarted and serves again, and that status says why it went.
func TestOutOfMemoryRestarts(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	v1r, _, _ := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("oom")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 1
	spec.Resources = deploy.Resources{MemoryBytes: 64 << 20, MilliCPU: 500, Pids: 256}
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	d := &deployed{b: b, env: "oom", spec: spec}
	st := d.status(t)
	name := st.Instances[0].Name
	checkCgroupFile(t, name, "memory", "memory.limit_in_bytes", "memory.max", "67108864")
	checkCgroupFile(t, name, "cpu", "cpu.cfs_quota_us", "cpu.max", "50000")
	checkCgroupFile(t, name, "pids", "pids.max", "pids.max", "256")
	if resp, err := http.Get(st.URL + "/eat?mb=200"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the replica held 200 MiB with a limit of 64 MiB")
		}
	}
	const why = "killed: out of memory (limit 64 MiB)"
	st = d.waitFor(t, "the replica to be killed and restarted", func(st deploy.Status) bool {
		return len(st.Instances) == 1 && st.Instances[0].Restarts >= 1 && st.Instances[0].Ready
	})
	if got := st.Instances[0].LastExit; got != why {
		t.Errorf("last exit = %q, want %q", got, why)
	}
	if _, body := httpGet(t, st.URL+"/version"); strings.TrimSpace(body) != v1r.Commit {
		t.Errorf("after the restart, /version = %q", body)
	}
}

// checkCgroupFile checks that the replica's cgroup file (v1: v1File in
// the controller's hierarchy; v2: v2File) starts with want.
func checkCgroupFile(t *testing.T, replica, controller, v1File, v2File, want string) {
	t.Helper()
	var found []string
	for _, pattern := range []string{"/sys/fs/cgroup/" + controller + "/*/" + replica + "/" + v1File,
		"/sys/fs/cgroup/" + controller + "/*/*/" + replica + "/" + v1File,
		"/sys/fs/cgroup/" + controller + "/*/*/*/" + replica + "/" + v1File,
		"/sys/fs/cgroup/slipway/*/" + replica + "/" + v2File} {
		m, _ := filepath.Glob(pattern)
		found = append(found, m...)
	}
	if len(found) != 1 {
		t.Fatalf("cgroup files %s of %s: %v, want one", v1File, replica, found)
	}
	b, err := os.ReadFile(found[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); !strings.HasPrefix(got, want) {
		t.Errorf("%s = %s, want %s", found[0], got, want)
	}
}
