package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/testenv"
)

func TestCheckRunnable(t *testing.T) {
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	for _, tt := range []struct {
		name string
		cf   v1.ConfigFile
		want string // "" for runnable
	}{
		{"entrypoint", v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, Config: v1.Config{Entrypoint: []string{"/app"}}}, ""},
		{"cmd, no platform", v1.ConfigFile{Config: v1.Config{Cmd: []string{"python3", "app.py"}}}, ""},
		{"another architecture", v1.ConfigFile{OS: "linux", Architecture: other, Config: v1.Config{Cmd: []string{"/app"}}},
			"is built for linux/" + other + "; this machine runs linux/" + runtime.GOARCH},
		{"another system", v1.ConfigFile{OS: "windows", Architecture: runtime.GOARCH, Config: v1.Config{Cmd: []string{"app.exe"}}}, "is built for windows/"},
		{"nothing to run", v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH}, "has neither entrypoint nor cmd"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img, err := mutate.ConfigFile(empty.Image, &tt.cf)
			if err != nil {
				t.Fatal(err)
			}
			err = checkRunnable(img, "the image")
			if tt.want == "" {
				if err != nil {
					t.Errorf("checkRunnable = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrUnrunnable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkRunnable = %v, want ErrUnrunnable saying %q", err, tt.want)
			}
		})
	}
}

// TestImportRefusesImageWithNothingToRun: an image from CI with neither
// entrypoint nor cmd is refused, and the commit gets no image.
func TestImportRefusesImageWithNothingToRun(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, dir, "init", "-q", "-b", "master")
	c1 := commitFile(t, dir, "a.txt", "one")
	e := newEnv(t, dir, reg, "true")
	e.b.Build.Kind = config.BuildImage
	e.b.Build.Image.Wait = time.Minute
	if err := e.b.Source.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	cf := &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, Config: v1.Config{Labels: map[string]string{LabelRevision: c1}}}
	img, err := mutate.ConfigFile(empty.Image, cf)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg + "/ci/app:sha-" + c1
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	_, err = e.b.Import(ctx, ImportRequest{Image: ref, Commit: c1, Branch: "master", Trigger: "api"})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "has neither entrypoint nor cmd") {
		t.Errorf("Import = %v, want ErrRefused saying it has nothing to run", err)
	}
	if d, err := e.client.Digest(ctx, e.repo, "sha-"+c1); err == nil {
		t.Errorf("%s:sha-%s is %s after a refused import", e.repo, c1[:7], d)
	}
}
