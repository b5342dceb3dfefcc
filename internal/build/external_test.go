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
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// ciImage pushes an image as a team's CI would, with the given revision
// label and platform, to ref, and returns its digest.
func ciImage(t *testing.T, ref, revision, arch string) v1.Hash {
	t.Helper()
	layer, err := random.Layer(256, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Cmd = []string{"/app"}
	if revision != "" {
		cf.Config.Labels = map[string]string{LabelRevision: revision}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestImagesFromCI: a build of an app whose images come from CI waits for
// the image, which the API's import brings; bad images are refused with the
// reason.
func TestImagesFromCI(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, dir, "init", "-q", "-b", "master")
	c1 := commitFile(t, dir, "a.txt", "one")
	c2 := commitFile(t, dir, "a.txt", "two")
	testenv.Git(t, dir, "checkout", "-q", "-b", "topic")
	stray := commitFile(t, dir, "b.txt", "topic")
	testenv.Git(t, dir, "checkout", "-q", "master")

	e := newEnv(t, dir, reg, "true")
	e.b.Build.Kind = config.BuildImage
	e.b.Build.Image.Wait = time.Minute
	if err := e.b.Source.Fetch(ctx); err != nil {
		t.Fatal(err)
	}

	ci := reg + "/ci/app"
	want := ciImage(t, ci+":sha-"+c1, c1, runtime.GOARCH)
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := e.b.Run(ctx, Request{Rev: c1, Trigger: "controller", NoFetch: true})
		done <- result{res, err}
	}()
	// The build waits: its row says so.
	deadline := time.Now().Add(30 * time.Second)
	for {
		row, err := e.store.LatestBuild(ctx, c1)
		if err == nil && row.State == ledger.BuildQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the build of c1 is not waiting: %+v, %v", row, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	imp, err := e.b.Import(ctx, ImportRequest{Image: ci + ":sha-" + c1, Commit: c1, Branch: "master", Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if imp.Digest != want.String() || imp.Commit != c1 || imp.Image != e.repo+"@"+want.String() {
		t.Errorf("imported %+v, want digest %s", imp, want)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.res.Digest != want || r.res.Build.State != ledger.BuildPushed || r.res.Build.Reason != "image from CI" {
			t.Errorf("build: %+v", r.res.Build)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the build did not take the imported image")
	}
	// Importing the same image again is harmless.
	if again, err := e.b.Import(ctx, ImportRequest{Image: ci + "@" + want.String(), Branch: "master", Trigger: "registry watch"}); err != nil || !again.Already {
		t.Errorf("import again: %+v, %v; want already imported", again, err)
	}

	for _, tt := range []struct {
		name, ref, commit, revision, arch, want string
	}{
		{"no label", ci + ":nolabel", "", "", runtime.GOARCH, "has no org.opencontainers.image.revision label"},
		{"label differs", ci + ":other", c1, c2, runtime.GOARCH, "was built from " + c2 + " (its org.opencontainers.image.revision label), not " + c1},
		{"not on the branch", ci + ":stray", "", stray, runtime.GOARCH, "which is not on master"},
		{"unknown commit", ci + ":unknown", "", strings.Repeat("ab", 20), runtime.GOARCH, "names commit abab"},
		{"other platform", ci + ":arm", "", c2, "s390x", "is built for linux/s390x"},
		{"tag moved", ci + ":moved", "", c1, runtime.GOARCH, "the image of a commit is never replaced"},
		{"missing", ci + ":nothing", "", "-", "", "does not exist: push it first"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.revision != "-" {
				ciImage(t, tt.ref, tt.revision, tt.arch)
			}
			_, err := e.b.Import(ctx, ImportRequest{Image: tt.ref, Commit: tt.commit, Branch: "master", Trigger: "api"})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Import = %v, want ErrRefused saying %q", err, tt.want)
			}
			// Only a reference that does not resolve may be there later.
			if errors.Is(err, ErrNotPushed) != (tt.revision == "-") {
				t.Errorf("Import = %v: ErrNotPushed %v, want %v", err, errors.Is(err, ErrNotPushed), tt.revision == "-")
			}
		})
	}

	// No image within build.image.wait: the build fails saying what to do.
	e.b.Build.Image.Wait = 300 * time.Millisecond
	_, err = e.b.Run(ctx, Request{Rev: c2, Trigger: "controller", NoFetch: true})
	if err == nil || !strings.Contains(err.Error(), "no image of "+c2[:7]+" came from CI within 300ms") {
		t.Errorf("build of c2 without an image: %v", err)
	}
}
