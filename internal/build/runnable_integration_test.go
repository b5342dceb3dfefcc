//go:build integration

package build

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// pushTinyBase pushes a one-file image with cf's platform and config to
// ref, for Dockerfiles that build FROM it with no RUN step.
func pushTinyBase(t *testing.T, ref string, cf v1.ConfigFile) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("hi\n"))
	tw.Close()
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	base, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.RootFS = base.RootFS
	if img, err = mutate.ConfigFile(img, &cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// TestDockerfileBuildRefusesUnrunnableImage: a Dockerfile that builds an
// image for another architecture (FROM a base of that platform), or one
// with nothing to run, fails its build with the cause; the commit gets no
// image and no tag.
func TestDockerfileBuildRefusesUnrunnableImage(t *testing.T) {
	testenv.LookPath(t, "buildah")
	ctx := context.Background()
	reg := startRegistry(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	pushTinyBase(t, reg+"/tiny:"+other, v1.ConfigFile{OS: "linux", Architecture: other, Config: v1.Config{Cmd: []string{"/hello"}}})
	pushTinyBase(t, reg+"/tiny:nocmd", v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH})
	repo := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "init", "-q", "-b", "master")
	commitFile(t, repo, "Dockerfile", "ARG BASE\nFROM ${BASE}\nCOPY greeting.txt /greeting.txt\n")
	e := newEnv(t, repo, reg, "")
	e.b.Build.Kind = config.BuildDockerfile
	e.b.Build.Dockerfile, e.b.Build.Context = config.DefaultDockerfile, "."
	e.b.InsecureRegistry = true
	t.Cleanup(e.b.Wait)
	for i, tt := range []struct {
		name, base, want string
	}{
		{"an image for another architecture", reg + "/tiny:" + other, "is built for linux/" + other + "; this machine runs linux/" + runtime.GOARCH},
		{"an image with nothing to run", reg + "/tiny:nocmd", "has neither entrypoint nor cmd"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			commit := commitFile(t, repo, "greeting.txt", strings.Repeat("hello\n", i+1))
			e.b.Build.Args = map[string]string{"BASE": tt.base}
			res, err := e.b.Run(ctx, Request{Trigger: "test"})
			if !errors.Is(err, ErrUnrunnable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("build = %v, want ErrUnrunnable saying %q", err, tt.want)
			}
			if res.Build.State != ledger.BuildFailed || !strings.Contains(res.Build.Reason, tt.want) {
				t.Errorf("ledger: %s, %q; want failed with the cause", res.Build.State, res.Build.Reason)
			}
			tags, err := e.client.Tags(ctx, e.repo)
			if err != nil && !strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), "unknown") {
				t.Fatal(err)
			}
			if len(tags) > 0 {
				t.Errorf("%s has tags %v after builds that failed (commit %s)", e.repo, tags, commit[:7])
			}
		})
	}
}
