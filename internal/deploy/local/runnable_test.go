package local

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestDeployRefusesUnrunnableImage: an image built for another platform,
// or with nothing to run, is refused before the rollout, saying why; the
// environment keeps serving what it ran.
func TestDeployRefusesUnrunnableImage(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "plat", 1)
	reg := newTestRegistry(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	c := strings.Repeat("4d", 20)
	for _, tt := range []struct {
		name   string
		change func(cf *v1.ConfigFile)
		want   string
	}{
		{"another architecture", func(cf *v1.ConfigFile) { cf.Architecture = other },
			"is built for linux/" + other + "; this machine runs linux/" + runtime.GOARCH + ": build the image for linux/" + runtime.GOARCH},
		{"another system", func(cf *v1.ConfigFile) { cf.OS = "windows" }, "is built for windows/" + runtime.GOARCH},
		{"nothing to run", func(cf *v1.ConfigFile) { cf.Config.Entrypoint, cf.Config.Cmd = nil, nil },
			"has neither entrypoint nor cmd: build it with one"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img := fixtureImage(t, c)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			cf = cf.DeepCopy()
			tt.change(cf)
			if img, err = mutate.ConfigFile(img, cf); err != nil {
				t.Fatal(err)
			}
			spec := d.spec
			spec.Image, spec.Commit, spec.Version = reg.push(t, "bad", img), c, "bad"
			err = d.b.Apply(t.Context(), spec)
			if !errors.Is(err, ErrUnrunnableImage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %v, want ErrUnrunnableImage saying %q", err, tt.want)
			}
			t.Log(err)
			st := d.status(t)
			if st.Commit != d.spec.Commit || st.Image != d.spec.Image || !st.Healthy || st.Replicas.Ready != 1 {
				t.Errorf("after the refused image: %s at %s, healthy=%v, %d ready; want %s as before, healthy", st.Image, st.Commit, st.Healthy, st.Replicas.Ready, d.spec.Image)
			}
			if resp, body := httpGet(t, st.URL+"/version"); resp.StatusCode != 200 || !strings.Contains(body, d.spec.Commit) {
				t.Errorf("GET /version after the refused image: %s %q, want %s", resp.Status, body, d.spec.Commit)
			}
		})
	}
}
