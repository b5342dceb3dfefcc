package apps

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

func TestExposedPort(t *testing.T) {
	for _, tt := range []struct {
		exposed []string
		want    int
	}{
		{nil, 0},
		{[]string{"8000/tcp"}, 8000},
		{[]string{"5000"}, 5000},
		{[]string{"53/udp", "8000/tcp"}, 8000},
		{[]string{"8000/tcp", "9000/tcp"}, 0},
		{[]string{"8000/tcp", "8000/udp"}, 8000},
		{[]string{"http/tcp"}, 0},
		{[]string{"70000/tcp"}, 0},
	} {
		m := map[string]struct{}{}
		for _, p := range tt.exposed {
			m[p] = struct{}{}
		}
		if got := ExposedPort(m); got != tt.want {
			t.Errorf("ExposedPort(%v) = %d, want %d", tt.exposed, got, tt.want)
		}
	}
}

// TestSpecPortFromImage: an app built from its Dockerfile, or from CI's
// images, listens on the port its image exposes unless build.port says
// otherwise; a Go app's port is build.port's.
func TestSpecPortFromImage(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	push := func(exposed ...string) string {
		img := empty.Image
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Config.Cmd = []string{"/app", strings.Join(exposed, ",")}
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range exposed {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(host + "/app:latest")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return host + "/app@" + d.String()
	}
	on8000, none, two := push("8000/tcp"), push(), push("8000/tcp", "9000/tcp")
	parse := func(yaml string) *config.Config {
		c, err := config.Parse("slipway.yaml", strings.NewReader("app: app\nrepo: {url: /src/app.git}\n"+yaml))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	images := registry.NewClient()
	for _, tt := range []struct {
		name, yaml, image string
		want              int
	}{
		{"dockerfile, exposes 8000", "build: {kind: dockerfile}\n", on8000, 8000},
		{"image from CI, exposes 8000", "build: {kind: image, image: {watch: ci.example.com/app}}\n", on8000, 8000},
		{"dockerfile, build.port wins", "build: {kind: dockerfile, port: 9090}\n", on8000, 9090},
		{"dockerfile, exposes none", "build: {kind: dockerfile}\n", none, 8080},
		{"dockerfile, exposes two", "build: {kind: dockerfile}\n", two, 8080},
		{"go", "build: {main: .}\n", on8000, 8080},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := Runtime{Config: parse(tt.yaml), Images: images}
			spec, err := r.SpecFor(context.Background(), ledger.Deployment{Env: "dev", Image: tt.image, Commit: strings.Repeat("a", 40), Replicas: 1})
			if err != nil {
				t.Fatal(err)
			}
			if spec.Port != tt.want {
				t.Errorf("port %d, want %d", spec.Port, tt.want)
			}
		})
	}
	// An image the registry does not have: the deployment fails, saying
	// how to do without the look-up.
	r := Runtime{Config: parse("build: {kind: dockerfile}\n"), Images: images}
	_, err := r.SpecFor(context.Background(), ledger.Deployment{Env: "dev", Image: host + "/app@sha256:" + strings.Repeat("0", 64), Commit: strings.Repeat("a", 40), Replicas: 1})
	if err == nil || !strings.Contains(err.Error(), "set build.port") {
		t.Errorf("spec of a missing image: %v, want an error naming build.port", err)
	}
}
