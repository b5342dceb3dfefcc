// Package deploytest is the conformance suite every deploy backend passes,
// in the manner of testing/fstest: a backend's tests call Run with a way to
// make the backend and the images to deploy.
package deploytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// Release is one build of the app, ready to deploy.
type Release struct {
	// Image is pinned to a digest.
	Image   string
	Commit  string
	Version string
	// Env is added to the spec's environment (e.g. to make a build that
	// never becomes ready).
	Env map[string]string
	// Annotations are added to the spec's annotations (e.g. to mark
	// simulated replicas that never become ready).
	Annotations map[string]string
}

// Fixture is what the suite deploys.
type Fixture struct {
	// V1 and V2 are two builds of the app that serve; Broken never becomes
	// ready (its readiness check fails, or it exits at start).
	V1, V2, Broken Release
	// Spec returns the base spec of an environment (app, port, health
	// paths, listen address, strategy); the suite fills in the image,
	// commit, version and replicas.
	Spec func(t testing.TB, env string) deploy.Spec
	// URL returns where the suite can reach a deployed environment; nil
	// uses Status.URL.
	URL func(t testing.TB, st deploy.Status) string
	// VersionPath, when set, is a path whose response body contains the
	// commit the serving replica was built from.
	VersionPath string
	// BrokenReadyTimeout is the ready timeout used for the broken release
	// (default 10s): the suite waits this long for the abort.
	BrokenReadyTimeout time.Duration
	// Simulated declares that the backend's replicas run no process (pods
	// on a simulated node): they produce no output, so a failed rollout
	// carries no log lines, and nothing answers HTTP, so the suite checks
	// replicas only through Status.
	Simulated bool
}

// Run runs the conformance suite against the backend newBackend makes.
// The subtests run in order on one environment: deploy, scale up, scale
// down, update, failed update, stopped (0 replicas) and started again,
// stop; a second environment checks that environments are independent.
func Run(t *testing.T, newBackend func(t testing.TB) deploy.Backend, fx Fixture) {
	ctx := t.Context()
	b := newBackend(t)
	env := "conform"

	spec := func(rel Release, replicas int) deploy.Spec {
		s := fx.Spec(t, env)
		s.Environment = env
		s.Image, s.Commit, s.Version, s.Replicas = rel.Image, rel.Commit, rel.Version, replicas
		s.Env = merge(s.Env, rel.Env)
		s.Annotations = merge(s.Annotations, rel.Annotations)
		s.Cause = "conformance test"
		return s
	}
	url := func(t testing.TB, st deploy.Status) string {
		if fx.URL != nil {
			return fx.URL(t, st)
		}
		if st.URL == "" {
			t.Fatalf("status of %s has no URL", st.Environment)
		}
		return st.URL
	}
	check := func(t *testing.T, rel Release, replicas int) deploy.Status {
		t.Helper()
		st, err := b.Status(ctx, env)
		if err != nil {
			t.Fatalf("Status(%s): %v", env, err)
		}
		type summary struct {
			Image, Digest, Commit, Version string
			Replicas                       deploy.Replicas
			Healthy                        bool
			Instances                      int
		}
		want := summary{rel.Image, digestOf(rel.Image), rel.Commit, rel.Version,
			deploy.Replicas{Desired: replicas, Ready: replicas, Updated: replicas}, true, replicas}
		got := summary{st.Image, st.Digest, st.Commit, st.Version, st.Replicas, st.Healthy, len(st.Instances)}
		if want != got {
			t.Fatalf("Status(%s) = %+v (message %q)\nwant %+v", env, got, st.Message, want)
		}
		if fx.VersionPath != "" && !fx.Simulated {
			base := url(t, st)
			for range replicas * 2 {
				body := get(t, base+fx.VersionPath)
				if !strings.Contains(body, rel.Commit) {
					t.Fatalf("GET %s = %q, want it to name commit %s", fx.VersionPath, body, rel.Commit)
				}
			}
		}
		return st
	}

	t.Run("status of an environment never deployed", func(t *testing.T) {
		_, err := b.Status(ctx, "never-deployed")
		if !errors.Is(err, deploy.ErrNotDeployed) {
			t.Fatalf("Status(never-deployed) error = %v, want ErrNotDeployed", err)
		}
		if err := b.Stop(ctx, "never-deployed"); !errors.Is(err, deploy.ErrNotDeployed) {
			t.Fatalf("Stop(never-deployed) error = %v, want ErrNotDeployed", err)
		}
	})

	t.Run("invalid spec is refused", func(t *testing.T) {
		s := spec(fx.V1, 1)
		s.Image = strings.Split(s.Image, "@")[0] + ":latest"
		if err := b.Apply(ctx, s); !errors.Is(err, deploy.ErrInvalidSpec) {
			t.Fatalf("Apply(image by tag) error = %v, want ErrInvalidSpec", err)
		}
		if _, err := b.Status(ctx, env); !errors.Is(err, deploy.ErrNotDeployed) {
			t.Fatalf("after a refused Apply, Status error = %v, want ErrNotDeployed", err)
		}
	})

	var before []string
	t.Run("deploy", func(t *testing.T) {
		if err := b.Apply(ctx, spec(fx.V1, 2)); err != nil {
			t.Fatalf("Apply(V1, 2 replicas): %v", err)
		}
		before = InstanceNames(check(t, fx.V1, 2))
	})
	if t.Failed() {
		return
	}

	t.Run("scale up keeps the running replicas", func(t *testing.T) {
		if err := b.Apply(ctx, spec(fx.V1, 3)); err != nil {
			t.Fatalf("Apply(V1, 3 replicas): %v", err)
		}
		after := InstanceNames(check(t, fx.V1, 3))
		for _, n := range before {
			if !slices.Contains(after, n) {
				t.Errorf("scaling 2→3 replaced replica %s; replicas now %v", n, after)
			}
		}
		before = after
	})

	t.Run("scale down removes only the extra replica", func(t *testing.T) {
		if err := b.Apply(ctx, spec(fx.V1, 2)); err != nil {
			t.Fatalf("Apply(V1, 2 replicas): %v", err)
		}
		after := InstanceNames(check(t, fx.V1, 2))
		kept := 0
		for _, n := range after {
			if slices.Contains(before, n) {
				kept++
			}
		}
		if kept != 2 {
			t.Errorf("scaling 3→2: replicas before %v, after %v; want the 2 remaining to be from before", before, after)
		}
	})

	t.Run("update", func(t *testing.T) {
		if err := b.Apply(ctx, spec(fx.V2, 2)); err != nil {
			t.Fatalf("Apply(V2): %v", err)
		}
		check(t, fx.V2, 2)
	})

	t.Run("failed update keeps the previous version", func(t *testing.T) {
		s := spec(fx.Broken, 2)
		s.Strategy.ReadyTimeout = fx.BrokenReadyTimeout
		if s.Strategy.ReadyTimeout == 0 {
			s.Strategy.ReadyTimeout = 10 * time.Second
		}
		err := b.Apply(ctx, s)
		var re *deploy.RolloutError
		if !errors.As(err, &re) {
			t.Fatalf("Apply(never-ready build) error = %v, want a *deploy.RolloutError", err)
		}
		if re.Environment != env || re.Version != fx.Broken.Version || re.Reason == "" {
			t.Errorf("RolloutError = %+v, want environment %s, version %s and a reason", re, env, fx.Broken.Version)
		}
		if len(re.LastLogs) == 0 && !fx.Simulated {
			t.Errorf("RolloutError has no log lines of the failing replica: %v", re)
		}
		check(t, fx.V2, 2)
	})

	t.Run("stopped with 0 replicas, then started again", func(t *testing.T) {
		if err := b.Apply(ctx, spec(fx.V2, 0)); err != nil {
			t.Fatalf("Apply(V2, 0 replicas): %v", err)
		}
		st, err := b.Status(ctx, env)
		if err != nil {
			t.Fatalf("Status of the stopped environment: %v, want a status saying it is stopped", err)
		}
		if !st.Stopped || st.Healthy || st.Replicas.Desired != 0 || st.Replicas.Ready != 0 || st.Commit != fx.V2.Commit {
			t.Fatalf("Status = %+v; want stopped, not healthy, no replica wanted or ready, still naming V2", st)
		}
		if err := b.Apply(ctx, spec(fx.V2, 2)); err != nil {
			t.Fatalf("Apply(V2, 2 replicas) to start it again: %v", err)
		}
		if st := check(t, fx.V2, 2); st.Stopped {
			t.Errorf("started again, Status still says stopped: %+v", st)
		}
	})

	t.Run("second environment is independent", func(t *testing.T) {
		other := "conform-b"
		s := spec(fx.V1, 1)
		s2 := fx.Spec(t, other)
		s2.Image, s2.Commit, s2.Version, s2.Replicas, s2.Env = s.Image, s.Commit, s.Version, 1, s.Env
		s2.Environment = other
		if err := b.Apply(ctx, s2); err != nil {
			t.Fatalf("Apply(%s): %v", other, err)
		}
		st, err := b.Status(ctx, other)
		if err != nil || st.Commit != fx.V1.Commit || st.Replicas.Ready != 1 {
			t.Fatalf("Status(%s) = %+v, %v; want V1 with 1 ready replica", other, st, err)
		}
		check(t, fx.V2, 2)
		if err := b.Stop(ctx, other); err != nil {
			t.Fatalf("Stop(%s): %v", other, err)
		}
		check(t, fx.V2, 2)
	})

	t.Run("stop", func(t *testing.T) {
		st, err := b.Status(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		var base string
		if !fx.Simulated {
			base = url(t, st)
		}
		if err := b.Stop(ctx, env); err != nil {
			t.Fatalf("Stop(%s): %v", env, err)
		}
		if _, err := b.Status(ctx, env); !errors.Is(err, deploy.ErrNotDeployed) {
			t.Fatalf("after Stop, Status error = %v, want ErrNotDeployed", err)
		}
		if fx.URL == nil && !fx.Simulated {
			c := &http.Client{Timeout: 2 * time.Second}
			if resp, err := c.Get(base + fx.Spec(t, env).ReadinessPath); err == nil {
				resp.Body.Close()
				t.Errorf("after Stop, %s still answers %s", base, resp.Status)
			}
		}
	})
}

func get(t testing.TB, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("GET %s = %s: %s", url, resp.Status, body)
	}
	return string(body)
}

func merge(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func digestOf(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		return image[i+1:]
	}
	return fmt.Sprintf("no digest in %q", image)
}

// InstanceNames returns the names of st's replicas, sorted: a change that
// must leave some replicas alone compares them before and after.
func InstanceNames(st deploy.Status) []string {
	var n []string
	for _, r := range st.Instances {
		n = append(n, r.Name)
	}
	slices.Sort(n)
	return n
}
