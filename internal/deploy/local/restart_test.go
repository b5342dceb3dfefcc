//go:build integration

package local

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/deploytest"
)

// startController runs a controller process (see runTestController) and
// returns once it applied the spec recorded in specPath.
func startController(t *testing.T, dir, specPath string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SLIPWAY_TEST_CONTROLLER="+dir, "SLIPWAY_TEST_SPEC="+specPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "applied\n" {
		t.Fatalf("controller: %q, %v; stderr: %s", line, err, stderr.String())
	}
	return cmd
}

func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// recordSpec writes spec where the test controller reads it, as the
// controller's ledger records a deployment before acting on it.
func recordSpec(t *testing.T, path string, spec deploy.Spec) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRestartUnderLoad kills the controller with SIGKILL while an
// environment serves a steady load, starts it again (it adopts what runs:
// applying the same state restarts no replica), and once more after a new
// desired state was recorded but not acted on (it reconciles): every
// request must succeed, and the environment must end in the desired state.
func TestRestartUnderLoad(t *testing.T) {
	v1r, v2r, _ := fixtureReleases(t)
	ctx := t.Context()
	dir := shortTempDir(t)
	specPath := filepath.Join(dir, "desired.json")
	b := newTestBackend(t, dir) // reads status; stops everything at the end
	spec := baseSpec("restart")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 2
	spec = spec.WithDefaults()
	recordSpec(t, specPath, spec)
	ctl := startController(t, dir, specPath)
	st, err := b.Status(ctx, "restart")
	if err != nil || !st.Healthy {
		t.Fatalf("after the first controller: %+v, %v", st, err)
	}
	before := deploytest.InstanceNames(st)

	l := startLoad(t, st.URL+"/", 300)
	phase := func(name string, do func()) {
		t.Helper()
		c, start := l.counts(), time.Now()
		do()
		time.Sleep(500 * time.Millisecond)
		l.check(t, name, c, time.Since(start))
	}
	phase("controller killed with SIGKILL", func() {
		kill9(t, ctl)
		time.Sleep(time.Second)
	})
	phase("controller started again (adopts)", func() {
		ctl = startController(t, dir, specPath)
	})
	st, err = b.Status(ctx, "restart")
	if err != nil {
		t.Fatal(err)
	}
	if got := deploytest.InstanceNames(st); !slices.Equal(got, before) {
		t.Errorf("after the restart the replicas are %v, want the same %v (adopted, not replaced)", got, before)
	}
	phase("killed after recording v2 x3", func() {
		kill9(t, ctl)
		want := spec
		want.Image, want.Commit, want.Version, want.Replicas = v2r.Image, v2r.Commit, v2r.Version, 3
		recordSpec(t, specPath, want)
	})
	phase("controller started again (reconciles)", func() {
		ctl = startController(t, dir, specPath)
	})
	l.stop()
	l.check(t, "total", counts{}, time.Since(l.start))
	st, err = b.Status(ctx, "restart")
	if err != nil || st.Commit != v2r.Commit || st.Replicas != (deploy.Replicas{Desired: 3, Ready: 3, Updated: 3}) || !st.Healthy {
		t.Errorf("at the end: %+v, %v; want v2 with 3 ready replicas", st, err)
	}
	kill9(t, ctl)
}
