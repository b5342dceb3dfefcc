//go:build integration

package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
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
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
)

// ciBuild builds the sample service at commit the way a team's CI might —
// go build in a checkout of its own, an image assembled with
// go-containerregistry (crane's library), not slipway's builder — and
// pushes it to ref. It returns the image's digest.
func ciBuild(t *testing.T, bare, commit, ref string) string {
	t.Helper()
	src := ciCheckout(t, bare, commit)
	bin := filepath.Join(filepath.Dir(src), "app")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=true", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CI's go build: %v\n%s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	files := []ciFile{
		{Name: "srv/", Mode: 0o1777},
		{Name: "tmp/", Mode: 0o1777},
		{Name: "srv/birthday-app", Mode: 0o755, Data: binary},
	}
	return ciPush(t, nil, files, v1.Config{
		Entrypoint: []string{"/srv/birthday-app"},
		Env:        []string{"PORT=8080"},
		User:       "65534:65534",
		WorkingDir: "/tmp",
		Labels:     map[string]string{build.LabelRevision: commit, "built-by": "ci"},
	}, ref)
}

// ciCheckout clones bare into a directory of its own and checks out
// commit there, as a CI's job starts; it returns the checkout.
func ciCheckout(t *testing.T, bare, commit string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	git(t, filepath.Dir(src), "clone", "-q", bare, src)
	git(t, src, "checkout", "-q", commit)
	return src
}

// ciFile is an entry of the layer a CI's build adds: a directory when
// Name ends in "/".
type ciFile struct {
	Name string
	Mode int64
	Data []byte
}

// ciPush assembles an image with go-containerregistry, as a CI might
// without slipway's builder: base (nil: none) with one layer of files on
// top, cfg as its configuration for linux on this machine's architecture;
// it pushes the image to ref and returns its digest. The layer's entries
// carry no times, so the same files give the same image.
func ciPush(t *testing.T, base v1.Image, files []ciFile, cfg v1.Config, ref string) string {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Typeflag: tar.TypeReg, Mode: f.Mode, Size: int64(len(f.Data))}
		if strings.HasSuffix(f.Name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var opts []tarball.LayerOption
	if base == nil {
		base = empty.Image
	} else if mt, err := base.MediaType(); err != nil {
		t.Fatal(err)
	} else if mt == types.OCIManifestSchema1 {
		opts = append(opts, tarball.WithMediaType(types.OCILayer))
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("CI's push of %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestImagesBuiltByCI runs the sample service with images built elsewhere:
// the first found by slipway's watch of the CI's repository, the next
// announced through the API; both go to dev and, by release, to prod as the
// same digest, and prod serves every request through release and rollback.
func TestImagesBuiltByCI(t *testing.T) {
	var watched string
	e, token := startDemo(t, false, func(e *env, _ string) {
		ws := e.ws
		cfg, err := config.Load(ws.Config)
		if err != nil {
			t.Fatal(err)
		}
		watched = e.regAddr + "/ci/birthday-app"
		cfg.Build.Kind = config.BuildImage
		cfg.Build.Image = config.ImageSource{Watch: watched, Interval: 500 * time.Millisecond, Wait: 5 * time.Minute}
		var buf bytes.Buffer
		if err := config.Write(&buf, cfg); err != nil {
			t.Fatal(err)
		}
		writeFile(t, ws.Config, buf.String())
		if out, errOut, code := runCLI("validate", "--config", ws.Config); code != 0 {
			t.Fatalf("validate: %s%s", out, errOut)
		}
	})
	ws := e.ws

	// The first commit waits for its image; the watch finds it.
	c0 := git(t, ws.Bare, "rev-parse", "master")
	e.waitFor("dev to wait for c0's image", func() bool {
		d := envOf(e.status(), "dev")
		return d.Rollout != nil
	})
	d0 := ciBuild(t, ws.Bare, c0, watched+":sha-"+c0)
	e.waitFor("c0 on prod", func() bool {
		p := envOf(e.status(), "prod")
		return p.Commit != nil && *p.Commit == c0 && p.Healthy && p.Rollout == nil
	})
	for _, name := range []string{"dev", "prod"} {
		if got := envOf(e.status(), name); deref(got.Digest) != d0 {
			t.Errorf("%s runs %s, want CI's image %s", name, deref(got.Digest), d0)
		}
	}
	if got := version(e.devURL); got != c0 {
		t.Errorf("dev's /version = %s, want %s", got, c0)
	}

	// The next commit's image is announced through the API, from another
	// repository than the watched one.
	c1 := e.push("Say hi", func(dir string) { writeFile(t, filepath.Join(dir, "CHANGES"), "say hi\n") })
	elsewhere := e.regAddr + "/other/birthday-app:build-42"
	d1 := ciBuild(t, ws.Bare, c1, elsewhere)
	post := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, e.apiURL+"/api/v1/apps/"+demo.AppName+"/builds", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	called := time.Now()
	if code, body := post(`{"image":"` + elsewhere + `","commit":"` + c1 + `"}`); code != http.StatusCreated {
		t.Fatalf("POST builds: %d %s", code, body)
	}
	e.waitFor("c1 on dev", func() bool { return version(e.devURL) == c1 })
	t.Logf("API call → c1 serving on dev: %s", time.Since(called).Round(time.Millisecond))
	e.waitFor("c1 verified on dev", func() bool {
		d := envOf(e.status(), "dev")
		return deref(d.Commit) == c1 && d.Rollout == nil
	})
	if got := envOf(e.status(), "dev"); deref(got.Digest) != d1 {
		t.Errorf("dev runs %s, want CI's image %s", deref(got.Digest), d1)
	}

	// Bad images are refused with the reason.
	bad := e.regAddr + "/other/birthday-app:bad"
	ciBuild(t, ws.Bare, c0, bad)
	if code, body := post(`{"image":"` + bad + `","commit":"` + c1 + `"}`); code != http.StatusConflict || !strings.Contains(body, "was built from "+c0) {
		t.Errorf("POST builds of an image of another commit: %d %s", code, body)
	}
	if code, body := post(`{"image":"` + e.regAddr + `/other/birthday-app:none"}`); code != http.StatusConflict || !strings.Contains(body, "does not exist") {
		t.Errorf("POST builds of a missing image: %d %s", code, body)
	}

	// Release and roll back prod under load: the same digests, no failed
	// request.
	l := startLoad(e.prodURL, 4)
	if out, errOut, code := e.slipway("release", c1); code != 0 {
		t.Fatalf("release c1: %s%s", out, errOut)
	}
	p := envOf(e.status(), "prod")
	if deref(p.Commit) != c1 || deref(p.Digest) != d1 {
		t.Errorf("prod after the release: %s %s, want c1 with CI's image %s", deref(p.Commit), deref(p.Digest), d1)
	}
	if out, errOut, code := e.slipway("rollback"); code != 0 {
		t.Fatalf("rollback: %s%s", out, errOut)
	}
	l.finish(t, "release and rollback of CI-built images")
	p = envOf(e.status(), "prod")
	if deref(p.Commit) != c0 || deref(p.Digest) != d0 {
		t.Errorf("prod after the rollback: %s %s, want c0 with %s", deref(p.Commit), deref(p.Digest), d0)
	}
}
