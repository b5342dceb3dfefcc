package cli

import (
	"errors"
	"fmt"
	"io"

	"slipway.dev/slipway/internal/build"
	"slipway.dev/slipway/internal/config"
)

// missingTool is a program an app's configuration needs that this machine
// lacks, as `slipway validate -o json` reports it.
type missingTool struct {
	App     string `json:"app"`
	Tool    string `json:"tool"`
	Needed  string `json:"neededBy"`
	Install string `json:"install"`
}

// errToolsMissing: the file is valid, and this machine lacks a program an
// app needs to be built.
var errToolsMissing = errors.New("this machine lacks programs the configuration needs (see above)")

// buildahInstall says how to install buildah.
const buildahInstall = "apt-get install buildah (Debian, Ubuntu), dnf install buildah (Fedora)"

// missingTools lists what the apps of set need and this machine lacks:
// buildah for Dockerfile builds.
func missingTools(set *config.Set) []missingTool {
	var out []missingTool
	for _, cfg := range set.Apps {
		if cfg.Build.Kind != config.BuildDockerfile {
			continue
		}
		if _, err := build.LookBuildah(""); err != nil {
			out = append(out, missingTool{App: cfg.App, Tool: "buildah", Needed: "build.kind: dockerfile", Install: buildahInstall})
		}
	}
	return out
}

// printMissing writes one line per missing tool and returns
// errToolsMissing when there is one.
func printMissing(w io.Writer, missing []missingTool) error {
	for _, m := range missing {
		fmt.Fprintf(w, "app %s: %s needs %s, which is not installed on this machine: install it with %s\n", m.App, m.Needed, m.Tool, m.Install)
	}
	if len(missing) > 0 {
		return errToolsMissing
	}
	return nil
}
