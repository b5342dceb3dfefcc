package local

import (
	"errors"
	"fmt"
	"net/http"
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
	t.Parallel()
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

	killSupervisor(t, d.b.ownDir(d.env))
	waitErr(t, b2, d.env, deploy.ErrNotDeployed)

	if err := b2.Apply(ctx, d.spec); err != nil {
		t.Fatalf("apply after the supervisor was killed: %v", err)
	}
	st, err = b2.Status(ctx, d.env)
	if err != nil || !st.Healthy || st.Replicas.Ready != 2 {
		t.Fatalf("status after applying again = %+v, %v; want 2 ready replicas", st, err)
	}
}

// TestStoppedEnvironment checks Replicas 0: a request in flight is
// answered, every replica is drained and stopped, the address answers 503
// with a text that names the app and environment and says how to start it,
// status reports it stopped; and applying replicas again starts it on the
// same address.
func TestStoppedEnvironment(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "halt", 2)
	ctx := t.Context()
	st := d.status(t)
	base := st.URL

	inflight := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/slow?ms=700")
		if err == nil {
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
			resp.Body.Close()
		}
		inflight <- err
	}()
	time.Sleep(200 * time.Millisecond)

	stop := d.spec
	stop.Replicas = 0
	if err := d.b.Apply(ctx, stop); err != nil {
		t.Fatalf("Apply(replicas 0): %v", err)
	}
	if err := <-inflight; err != nil {
		t.Errorf("request in flight while stopping: %v", err)
	}
	st, err := d.b.Status(ctx, d.env)
	if err != nil {
		t.Fatalf("status of the stopped environment: %v", err)
	}
	if !st.Stopped || st.Healthy || st.Replicas != (deploy.Replicas{}) || len(st.Instances) != 0 || st.Commit != d.spec.Commit {
		t.Errorf("status = %+v; want stopped, not healthy, no replica, still naming commit %s", st, d.spec.Commit)
	}
	if st.URL != base {
		t.Errorf("URL = %s, want the same address %s", st.URL, base)
	}
	resp, body := httpGet(t, base+"/version")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET while stopped: %s, want 503", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	for _, want := range []string{"environment halt of fixture is stopped", "slipway start halt"} {
		if !strings.Contains(body, want) {
			t.Errorf("body while stopped = %q, want it to contain %q", body, want)
		}
	}

	// Stopped again: nothing changes.
	if err := d.b.Apply(ctx, stop); err != nil {
		t.Fatalf("Apply(replicas 0) again: %v", err)
	}

	if err := d.b.Apply(ctx, d.spec); err != nil {
		t.Fatalf("Apply(replicas 2) to start it: %v", err)
	}
	st = d.status(t)
	if st.Stopped || !st.Healthy || st.Replicas.Ready != 2 || st.URL != base {
		t.Fatalf("status after starting = %+v; want 2 ready replicas on %s", st, base)
	}
	resp, body = httpGet(t, base+"/version")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, d.spec.Commit) {
		t.Errorf("GET after starting: %s %q, want 200 naming %s", resp.Status, body, d.spec.Commit)
	}
}

// TestLongDirectory checks that the runtime works in a directory whose
// control sockets' paths are longer than a unix socket address holds
// (DATA/run/APP/envs/ENV/ctl.sock with long names): the supervisor binds
// and the backend dials through the directory's /proc/self/fd link.
func TestLongDirectory(t *testing.T) {
	t.Parallel()
	v1r, _, _ := fixtureReleases(t)
	dir := filepath.Join(shortTempDir(t), strings.Repeat("d", 40), "run", strings.Repeat("a", 40))
	env := strings.Repeat("e", 40)
	if sock := filepath.Join(dir, "envs", env, socketName); len(sock) <= maxSocketPath {
		t.Fatalf("socket path %s is short: the test checks nothing", sock)
	}
	b := newTestBackend(t, dir)
	spec := baseSpec(env)
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 1
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := b.Status(t.Context(), env)
	if err != nil || !st.Healthy {
		t.Fatalf("Status = %+v, %v; want healthy", st, err)
	}
	if err := b.Stop(t.Context(), env); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := b.Status(t.Context(), env); !errors.Is(err, deploy.ErrNotDeployed) {
		t.Errorf("after Stop: %v, want ErrNotDeployed", err)
	}
}

// TestLegacyEnvironmentsAdopted checks an upgrade from a slipway that ran
// one app with every environment in DATA/run/envs: a backend of the app,
// on DATA/run/APP, runs that app's environments where they are (the same
// supervisor, address and data, even after the supervisor died), leaves
// another app's alone, and puts new environments in its own directory.
func TestLegacyEnvironmentsAdopted(t *testing.T) {
	t.Parallel()
	v1r, v2r, _ := fixtureReleases(t)
	ctx := t.Context()
	legacy := shortTempDir(t)
	old := newTestBackend(t, legacy) // the older slipway; stops what is left in legacy at the end
	dev := baseSpec("dev")
	dev.Image, dev.Commit, dev.Version, dev.Replicas = v1r.Image, v1r.Commit, v1r.Version, 1
	other := dev
	other.Environment, other.App = "qa", "other-app"
	for _, sp := range []deploy.Spec{dev, other} {
		if err := old.Apply(ctx, sp); err != nil {
			t.Fatalf("Apply(%s) by the older slipway: %v", sp.Environment, err)
		}
	}
	before, err := old.Status(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}

	own := filepath.Join(legacy, "fixture")
	b := newTestBackendOpts(t, Options{Dir: own, App: "fixture", LegacyDir: legacy})
	st, err := b.Status(ctx, "dev")
	if err != nil || st.URL != before.URL || !slices.Equal(deploytest.InstanceNames(st), deploytest.InstanceNames(before)) {
		t.Fatalf("status of the legacy dev = %+v, %v; want the running one %+v", st, err, before)
	}
	if _, err := b.Status(ctx, "qa"); !errors.Is(err, deploy.ErrNotDeployed) {
		t.Errorf("status of another app's legacy qa: %v, want ErrNotDeployed", err)
	}

	// An update goes to the legacy supervisor: same address, no second
	// supervisor.
	v2 := dev
	v2.Image, v2.Commit, v2.Version = v2r.Image, v2r.Commit, v2r.Version
	if err := b.Apply(ctx, v2); err != nil {
		t.Fatalf("Apply(v2): %v", err)
	}
	if st, err := old.Status(ctx, "dev"); err != nil || st.Commit != v2r.Commit || st.URL != before.URL {
		t.Errorf("legacy dev after the update = %+v, %v; want v2 on %s", st, err, before.URL)
	}
	if _, err := os.Stat(b.ownDir("dev")); err == nil {
		t.Errorf("%s was made: the legacy environment must be run where it is", b.ownDir("dev"))
	}

	// Its supervisor gone, it is not deployed; applied again, it runs in
	// the legacy directory still, with its data.
	marker := filepath.Join(hostDataDir(filepath.Join(legacy, "envs", "dev")), "kept")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	killSupervisor(t, filepath.Join(legacy, "envs", "dev"))
	waitErr(t, b, "dev", deploy.ErrNotDeployed)
	if err := b.Apply(ctx, v2); err != nil {
		t.Fatalf("Apply after the legacy supervisor died: %v", err)
	}
	if _, err := os.Stat(b.ownDir("dev")); err == nil {
		t.Errorf("%s was made after the legacy supervisor died: its data is in the legacy directory", b.ownDir("dev"))
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("legacy data: %v", err)
	}
	if st, err := b.Status(ctx, "dev"); err != nil || !st.Healthy {
		t.Errorf("dev after applying again = %+v, %v", st, err)
	}

	// Another app's environment of the same name is not taken: this app
	// gets its own.
	mine := other
	mine.App = "fixture"
	if err := b.Apply(ctx, mine); err != nil {
		t.Fatalf("Apply(qa of this app): %v", err)
	}
	if _, err := os.Stat(b.ownDir("qa")); err != nil {
		t.Errorf("this app's qa is not in its own directory: %v", err)
	}
	if st, err := old.Status(ctx, "qa"); err != nil || !st.Healthy {
		t.Errorf("the other app's qa = %+v, %v; want it untouched", st, err)
	}
}

// killSupervisor kills the supervisor of the environment directory dir
// with SIGKILL.
func killSupervisor(t *testing.T, dir string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "supervisor.pid"))
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
}
