package build

import (
	"errors"
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrUnrunnable is an image slipway does not deploy because it cannot run:
// built for another platform than the machine's, or with nothing to run
// (no entrypoint, no cmd). A Dockerfile build that makes one fails with it,
// before the image gets its tags.
var ErrUnrunnable = errors.New("image cannot run")

// checkRunnable checks img's configuration: linux on this machine's
// architecture (an image that does not say is taken as it is), and an
// entrypoint or a cmd. what names the image in the error.
func checkRunnable(img v1.Image, what string) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("%w: read the configuration of %s: %w", ErrPush, what, err)
	}
	if goos, arch := cf.OS, cf.Architecture; goos != "" && goos != "linux" || arch != "" && arch != runtime.GOARCH {
		return fmt.Errorf("%w: %s is built for %s/%s; this machine runs linux/%s: build it FROM an image for linux/%s",
			ErrUnrunnable, what, goos, arch, runtime.GOARCH, runtime.GOARCH)
	}
	if len(cf.Config.Entrypoint)+len(cf.Config.Cmd) == 0 {
		return fmt.Errorf("%w: %s has neither entrypoint nor cmd: give it one (ENTRYPOINT or CMD in the Dockerfile)", ErrUnrunnable, what)
	}
	return nil
}
