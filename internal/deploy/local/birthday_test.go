package local

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

var (
	birthdayOnce sync.Once
	birthdayBin  []byte
	birthdayErr  error
)

// birthdayImage is the sample app as an image; build tells builds apart
// (it lands in the image's environment, so each build has its own digest).
func birthdayImage(t testing.TB, build string) v1.Image {
	t.Helper()
	birthdayOnce.Do(func() {
		dir, err := os.MkdirTemp("", "birthday")
		if err != nil {
			birthdayErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "birthday-app")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
		cmd.Dir = "../../../examples/birthday-app"
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			birthdayErr = &buildError{err: err, out: string(b)}
			return
		}
		birthdayBin, birthdayErr = os.ReadFile(out)
	})
	if birthdayErr != nil {
		t.Fatalf("build examples/birthday-app: %v", birthdayErr)
	}
	layer := tarLayer(t,
		tarEntry{hdr: tar.Header{Name: "ko-app/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarEntry{hdr: tar.Header{Name: "ko-app/birthday-app", Mode: 0o755}, body: birthdayBin},
	)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/ko-app/birthday-app"}
	cf.Config.Env = []string{"PATH=/ko-app", "BUILD=" + build}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }
