package config

import (
	"path"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// ImageSource is where the images of an app built elsewhere come from.
// They reach slipway in one of two ways: its CI calls
// POST /api/v1/apps/{app}/builds, or slipway lists Watch for new tags.
// Either way the image must carry the org.opencontainers.image.revision
// label naming a commit on the app's branch; slipway copies it, by digest,
// to REGISTRY/APP:sha-COMMIT, and from there it goes along the chain like
// an image slipway built.
type ImageSource struct {
	// Watch is an image repository (such as ghcr.io/org/app) listed every
	// Interval for tags matching Tags. Empty: images come only through the
	// API.
	Watch string `yaml:"watch,omitempty"`
	// Tags is the pattern (shell glob: *, ?, [a-z]) of Watch's tags to
	// take. Default "sha-*".
	Tags string `yaml:"tags,omitempty"`
	// Interval is how often Watch is listed. Default 30s.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Insecure allows plain HTTP and unverified TLS to Watch's registry.
	Insecure bool `yaml:"insecure,omitempty"`
	// Wait is how long a new commit waits for its image before its
	// deployment fails. Default 30m.
	Wait time.Duration `yaml:"wait,omitempty"`
}

// Image source defaults.
const (
	DefaultImageTags     = "sha-*"
	DefaultImageInterval = 30 * time.Second
	DefaultImageWait     = 30 * time.Minute
)

// ImageTags is Tags, or its default.
func (s ImageSource) ImageTags() string { return nonEmpty(s.Tags, DefaultImageTags) }

// WatchInterval is Interval, or its default.
func (s ImageSource) WatchInterval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	return DefaultImageInterval
}

// WaitFor is Wait, or its default.
func (s ImageSource) WaitFor() time.Duration {
	if s.Wait > 0 {
		return s.Wait
	}
	return DefaultImageWait
}

// ImagesFromCI reports whether the app's images are built elsewhere.
func (b Build) ImagesFromCI() bool { return b.Kind == BuildImage }

// imageSource checks build.image, which belongs to kind image.
func (v *validator) imageSource(b Build) {
	img := b.Image
	if b.Kind != BuildImage {
		if img != (ImageSource{}) {
			v.add("build.image", "applies only to kind: image (images built elsewhere); set build.kind: image or remove it")
		}
		return
	}
	if img.Watch != "" {
		if strings.Contains(img.Watch, "://") {
			v.add("build.image.watch", "%q has a scheme: write the repository without it, such as ghcr.io/org/app; set insecure: true for plain HTTP", img.Watch)
		} else if _, err := name.NewRepository(img.Watch); err != nil {
			v.add("build.image.watch", "%q is not an image repository, such as ghcr.io/org/app: %v", img.Watch, err)
		}
	} else if img.Insecure {
		v.add("build.image.insecure", "applies only to the registry of build.image.watch")
	}
	if _, err := path.Match(img.Tags, "sha-0"); err != nil {
		v.add("build.image.tags", "%q is not a pattern: use a shell glob such as sha-* or v[0-9]*", img.Tags)
	}
	if img.Interval < 0 {
		v.add("build.image.interval", "must not be negative")
	}
	if img.Wait < 0 {
		v.add("build.image.wait", "must not be negative")
	}
}
