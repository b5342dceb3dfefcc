// Package testenv decides what a test does when something it needs is missing
// from the machine: on a developer's laptop it skips and says why; under the
// project's test script (SLIPWAY_TEST_STRICT=1) it fails, so the suite never
// passes by skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing dependencies must fail tests.
func Strict() bool { return os.Getenv("SLIPWAY_TEST_STRICT") == "1" }

// Missing stops the test because a dependency is missing. why names the
// dependency and how to get it (usually: run scripts/test, or scripts/deps).
func Missing(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("required by this test and missing: %s (SLIPWAY_TEST_STRICT=1 forbids skipping)", why)
	}
	t.Skipf("skipped: %s (scripts/test provides it)", why)
}

// LookPath returns the path of an executable, or stops the test through
// Missing when it is not installed.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed (scripts/deps installs it)")
	}
	return p
}

// Env returns the value of an environment variable that points a test at a
// server, or stops the test through Missing when it is unset.
func Env(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, name+" is unset: no "+what+" to test against")
	}
	return v
}
