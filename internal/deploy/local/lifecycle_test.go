package local

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/deploytest"
)

// waitErr polls env's status until it fails with want, failing the test
// after 20 seconds.
func waitErr(t *testing.T, b *Backend, env string, want error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := b.Status(t.Context(), env)
		if errors.Is(err, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s: %v, want %v", env, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNewBackendAdoptsRunningSupervisor checks what a restarted controller
// finds: a supervisor that still runs is the environment as it was (the
// same replicas, even when the same spec is applied again), and an
// environment whose supervisor is gone is not deployed until it is applied
// again.
func TestNewBackendAdoptsRunningSupervisor(t *testing.T) {
	d := deployFixture(t, "adopt", 2)
	ctx := t.Context()
	before := deploytest.InstanceNames(d.status(t))

	b2, err := New(Options{Dir: d.b.dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b2.Status(ctx, d.env)
	if err != nil || !st.Healthy || st.Commit != d.spec.Commit {
		t.Fatalf("status through a new backend = %+v, %v; want the running environment", st, err)
	}
	if err := b2.Apply(ctx, d.spec); err != nil {
		t.Fatal(err)
	}
	if st, _ := b2.Status(ctx, d.env); !slices.Equal(deploytest.InstanceNames(st), before) {
		t.Errorf("applying the state it serves replaced the replicas %v with %v", before, deploytest.InstanceNames(st))
	}

	raw, err := os.ReadFile(filepath.Join(d.b.envDir(d.env), "supervisor.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitErr(t, b2, d.env, deploy.ErrNotDeployed)

	if err := b2.Apply(ctx, d.spec); err != nil {
		t.Fatalf("apply after the supervisor was killed: %v", err)
	}
	st, err = b2.Status(ctx, d.env)
	if err != nil || !st.Healthy || st.Replicas.Ready != 2 {
		t.Fatalf("status after applying again = %+v, %v; want 2 ready replicas", st, err)
	}
}
