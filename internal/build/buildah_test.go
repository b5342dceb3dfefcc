package build

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestBuildahArgs: the arguments of buildah build for a spec, storage and
// configuration in the builder's directory.
func TestBuildahArgs(t *testing.T) {
	h := &Buildah{Dir: "/data/buildah"}
	got := h.BuildArgs(BuildSpec{
		Context: "/data/work/app.src", Dockerfile: "/data/work/app.src/Dockerfile", Target: "runtime",
		Args:      map[string]string{"B": "2", "A": "1"},
		Timestamp: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), IIDFile: "/data/work/iid",
	})
	want := []string{"--root", "/data/buildah/storage", "--runroot", "/data/buildah/run", "--storage-driver", "vfs",
		"--registries-conf", "/data/buildah/registries.conf",
		"build", "--isolation", "chroot", "--layers", "--format", "oci", "--identity-label=false",
		"--timestamp", "1772366400", "--iidfile", "/data/work/iid", "--file", "/data/work/app.src/Dockerfile"}
	want = append(want, h.policyArgs()...)
	want = append(want, "--target", "runtime", "--build-arg", "A=1", "--build-arg", "B=2", "/data/work/app.src")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("buildah build arguments (-want +got):\n%s", diff)
	}
}

// TestRegistriesConf: only the hosts named are spoken to without TLS
// verification.
func TestRegistriesConf(t *testing.T) {
	want := "# Written by slipway for its Dockerfile builds.\nunqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n" +
		"\n[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n"
	if diff := cmp.Diff(want, registriesConf([]string{"127.0.0.1:5000", "127.0.0.1:5000"})); diff != "" {
		t.Errorf("registries.conf (-want +got):\n%s", diff)
	}
	for host, want := range map[string]bool{"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "localhost": true,
		"ghcr.io": false, "registry.example.com:5000": false, "10.0.0.1:5000": false} {
		if got := loopback(host); got != want {
			t.Errorf("loopback(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestDeclaredArgs: slipway's own build arguments go only to a Dockerfile
// that declares them.
func TestDeclaredArgs(t *testing.T) {
	got := declaredArgs("ARG BASE=debian\nFROM ${BASE}\n  arg SLIPWAY_COMMIT\nRUN echo ARG NOT_THIS\nARG\tSOURCE_DATE_EPOCH=0\n")
	want := map[string]bool{"BASE": true, "SLIPWAY_COMMIT": true, "SOURCE_DATE_EPOCH": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("declared (-want +got):\n%s", diff)
	}
}

// TestBaseImageCause: buildah's reason for not pulling a FROM image is
// found in its output.
func TestBaseImageCause(t *testing.T) {
	tail := "STEP 1/9: FROM 127.0.0.1:5000/no-such-base:1\nTrying to pull 127.0.0.1:5000/no-such-base:1...\n" +
		"Error: creating build container: initializing source docker://127.0.0.1:5000/no-such-base:1: reading manifest 1 in 127.0.0.1:5000/no-such-base: manifest unknown"
	want := "initializing source docker://127.0.0.1:5000/no-such-base:1: reading manifest 1 in 127.0.0.1:5000/no-such-base: manifest unknown"
	if got := baseImageCause(tail); got != want {
		t.Errorf("cause = %q, want %q", got, want)
	}
	if got := baseImageCause("STEP 8/9: RUN false\nError: building at STEP \"RUN false\": exit status 1"); got != "" {
		t.Errorf("cause of a failing RUN = %q, want none", got)
	}
}
