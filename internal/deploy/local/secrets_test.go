package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/deploy"
)

// TestSecretsReachOnlyReplicas deploys the fixture with a secret from
// slipway's environment and one from a file, reads them back from a
// replica, and then looks for their values everywhere else the runtime
// writes or answers: every file under its directory (the spec it serves,
// logs, data), its status and the spec its supervisor reports.
func TestSecretsReachOnlyReplicas(t *testing.T) {
	const fromEnv, fromFile = "s3cr3t-env-7f1c9a", "s3cr3t-file-52be0d"
	t.Parallel()
	setOwnEnv(t, "SLIPWAY_TEST_SECRET_API_KEY", fromEnv)
	secretFile := filepath.Join(t.TempDir(), "db_pass")
	if err := os.WriteFile(secretFile, []byte(fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v1r, _, _ := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("sec")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 2
	spec.Secrets = map[string]deploy.SecretRef{
		"API_KEY": {Env: "SLIPWAY_TEST_SECRET_API_KEY"},
		"DB_PASS": {File: secretFile},
	}
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(t.Context(), "sec")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"API_KEY": fromEnv, "DB_PASS": fromFile} {
		if _, got := httpGet(t, st.URL+"/secret?name="+name); got != want {
			t.Errorf("the replica's %s = %q, want %q", name, got, want)
		}
	}
	// Applying again (a controller restarting) changes nothing; a
	// replica restarted by its supervisor still gets the values.
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatal(err)
	}

	// The supervisor does not carry the variable it was read from.
	pid, err := os.ReadFile(filepath.Join(b.ownDir("sec"), "supervisor.pid"))
	if err != nil {
		t.Fatal(err)
	}
	environ, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(environ, []byte(fromEnv)) {
		t.Error("the supervisor's environment holds the secret's variable")
	}

	statusJSON, _ := json.Marshal(st)
	var served deploy.Spec
	if err := newControl(b.ownDir("sec")).do(t.Context(), "GET", "/spec", nil, &served); err != nil {
		t.Fatal(err)
	}
	specJSON, _ := json.Marshal(served)
	if !bytes.Contains(specJSON, []byte("SLIPWAY_TEST_SECRET_API_KEY")) {
		t.Errorf("the served spec %s does not name the secret's reference", specJSON)
	}
	var logs bytes.Buffer
	if err := b.Logs(t.Context(), "sec", false, &logs); err != nil {
		t.Fatal(err)
	}
	places := map[string][]byte{"status": statusJSON, "served spec": specJSON, "logs": logs.Bytes()}
	filepath.WalkDir(b.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if strings.Contains(p, string(filepath.Separator)+"rootfs"+string(filepath.Separator)) {
			return nil // the image's files
		}
		data, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("read %s: %v", p, err)
		}
		places[p] = data
		return nil
	})
	if len(places) < 6 {
		t.Fatalf("looked in %d places only", len(places))
	}
	for where, data := range places {
		for _, secret := range []string{fromEnv, fromFile} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("a secret's value is in %s", where)
			}
		}
	}
}

// TestMissingSecretFailsClearly checks that a secret that cannot be read
// fails the deployment with its name and where it was looked for, before
// anything changes.
func TestMissingSecretFailsClearly(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("nosec")
	spec.Image = "127.0.0.1:1/fixture@sha256:" + strings.Repeat("ab", 32)
	spec.Commit, spec.Version, spec.Replicas = strings.Repeat("1a", 20), "1a1a1a1", 1
	spec.Secrets = map[string]deploy.SecretRef{"API_KEY": {Env: "SLIPWAY_TEST_SECRET_UNSET"}}
	err := b.Apply(t.Context(), spec)
	want := "secret API_KEY: slipway's environment has no SLIPWAY_TEST_SECRET_UNSET: set it where slipway runs"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Apply = %v, want an error saying %q", err, want)
	}
	spec.Secrets = map[string]deploy.SecretRef{"DB_PASS": {File: "/nonexistent/db_pass"}}
	err = b.Apply(t.Context(), spec)
	want = "secret DB_PASS: read /nonexistent/db_pass: no such file or directory"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Apply = %v, want an error saying %q", err, want)
	}
}
