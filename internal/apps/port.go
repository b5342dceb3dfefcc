package apps

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// SpecFor is Spec with the port the image says, for an app whose images
// slipway does not compile (a Dockerfile build, or images from CI): when
// the configuration does not set build.port, the app listens on the one
// TCP port its image exposes (EXPOSE), and the runtime passes that as
// PORT and points probes and Services at it. An image that exposes no
// port, or several, keeps build.port's default. A Go build's image
// exposes build.port itself, so its spec is Spec's.
func (r Runtime) SpecFor(ctx context.Context, d ledger.Deployment) (deploy.Spec, error) {
	spec, err := r.Spec(d)
	if err != nil {
		return spec, err
	}
	if r.Config.Build.Kind == config.BuildGo || r.Config.PortWritten() || r.Images == nil {
		return spec, nil
	}
	port, err := r.imagePort(ctx, d.Image)
	if err != nil {
		return deploy.Spec{}, fmt.Errorf("deploy %s: %w", d.Env, err)
	}
	if port != 0 {
		spec.Port = port
	}
	return spec, nil
}

// imagePort is the one TCP port image (REPOSITORY@DIGEST) exposes, 0 when
// it exposes none or several.
func (r Runtime) imagePort(ctx context.Context, image string) (int, error) {
	repo, digest, ok := strings.Cut(image, "@")
	if !ok {
		return 0, fmt.Errorf("image %q is not pinned to a digest", image)
	}
	hash, err := v1.NewHash(digest)
	if err != nil {
		return 0, fmt.Errorf("image %q: %w", image, err)
	}
	img, err := r.Images.Image(ctx, repo, hash)
	if err != nil {
		return 0, fmt.Errorf("read the port %s exposes (set build.port to give it instead): %w", image, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return 0, fmt.Errorf("read the port %s exposes: %w", image, err)
	}
	return ExposedPort(cf.Config.ExposedPorts), nil
}

// ExposedPort is the one TCP port of an image's ExposedPorts ("8000/tcp",
// or "8000": TCP), 0 when there is none or more than one.
func ExposedPort(exposed map[string]struct{}) int {
	var ports []int
	for p := range exposed {
		num, proto, _ := strings.Cut(p, "/")
		if proto != "" && !strings.EqualFold(proto, "tcp") {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > 65535 || slices.Contains(ports, n) {
			continue
		}
		ports = append(ports, n)
	}
	if len(ports) != 1 {
		return 0
	}
	return ports[0]
}
