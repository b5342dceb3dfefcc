package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/ledger"
)

// validate names the apps and environments the data directory's ledger has
// deployed that the file no longer configures, with the command that
// removes each.
func TestValidateReportsLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(ctx, filepath.Join(data, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ app, env string }{{"shop", "dev"}, {"shop", "qa"}, {"blog", "prod"}} {
		d := &ledger.Deployment{Env: r.env, Kind: ledger.KindDeploy, Trigger: "test", Commit: strings.Repeat("c", 40), State: ledger.StateSucceeded}
		if err := store.Deployments().ForApp(r.app).Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	file := filepath.Join(dir, "slipway.yaml")
	if err := os.WriteFile(file, []byte("app: shop\nrepo: {url: /nonexistent.git}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Main(ctx, []string{"validate", "--config", file, "--data-dir", data}, &out, &errOut); code != 0 {
		t.Fatalf("validate: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"left the configuration, still deployed: app blog (remove it with: slipway remove --app blog)",
		"left the configuration, still deployed: environment qa of app shop (remove it with: slipway remove --app shop --env qa)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("validate's output lacks %q:\n%s", want, out.String())
		}
	}
}

// validate says when a Dockerfile build's buildah is missing and how to
// install it, and exits 1: the file is right, the machine lacks a program.
func TestValidateBuildahMissing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("PATH", filepath.Join(dir, "empty"))
	file := filepath.Join(dir, "slipway.yaml")
	if err := os.WriteFile(file, []byte("app: pyapp\nrepo: {url: /nonexistent.git}\nbuild: {kind: dockerfile}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Main(ctx, []string{"validate", "--config", file}, &out, &errOut); code != 1 {
		t.Fatalf("validate: exit %d, want 1: %s%s", code, out.String(), errOut.String())
	}
	want := "app pyapp: build.kind: dockerfile needs buildah, which is not installed on this machine: install it with apt-get install buildah (Debian, Ubuntu), dnf install buildah (Fedora)"
	if !strings.Contains(out.String(), want) {
		t.Errorf("validate's output lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	if code := Main(ctx, []string{"validate", "--config", file, "-o", "json"}, &out, &errOut); code != 1 {
		t.Fatalf("validate -o json: exit %d, want 1", code)
	}
	if !strings.Contains(out.String(), `"missing":[{"app":"pyapp","tool":"buildah"`) && !strings.Contains(out.String(), `"tool": "buildah"`) {
		t.Errorf("validate -o json does not name buildah:\n%s", out.String())
	}
}
