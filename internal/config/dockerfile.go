package config

import (
	"path"
	"regexp"
	"slices"
	"strings"
)

// DefaultDockerfile is the Dockerfile a dockerfile build reads when
// build.dockerfile is not set, in its context.
const DefaultDockerfile = "Dockerfile"

// dockerfileFields are the build fields of a dockerfile build only.
var dockerfileFields = []string{"dockerfile", "context", "target", "args"}

// goFields are the build fields of a Go build only.
var goFields = []string{"main", "ldflags", "tags"}

// stageName is what a Dockerfile stage name (FROM … AS NAME) looks like.
var stageName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]*$`)

// defaultBuildKind completes c's build after parsing: a build that names
// no kind but writes a Dockerfile field is a dockerfile build, and a
// dockerfile build gets its Dockerfile defaults. Its test command is only
// what the file says: without one, the Dockerfile's RUN steps are the
// tests (the Go default, go test ./..., does not apply).
func defaultBuildKind(c *Config) {
	if _, ok := c.pos["build.kind"]; !ok {
		for _, f := range dockerfileFields {
			if _, ok := c.pos["build."+f]; ok {
				c.Build.Kind = BuildDockerfile
			}
		}
	}
	if c.Build.Kind != BuildDockerfile {
		return
	}
	if c.Build.Dockerfile == "" {
		c.Build.Dockerfile = DefaultDockerfile
	}
	if c.Build.Context == "" {
		c.Build.Context = "."
	}
	if _, ok := c.pos["test.command"]; !ok {
		c.Test.Command = ""
	}
}

// DockerfilePath is the Dockerfile of a dockerfile build, relative to the
// repository root.
func (b Build) DockerfilePath() string {
	return path.Join(b.Context, b.Dockerfile)
}

// buildKind checks the kind of build and the fields that belong to it.
func (v *validator) buildKind(b Build) {
	switch b.Kind {
	case BuildGo:
		for _, f := range dockerfileFields {
			if v.written("build." + f) {
				v.add("build."+f, "applies to Dockerfile builds, and build.kind is go: set build.kind: dockerfile, or remove build.%s", f)
			}
		}
	case BuildDockerfile:
		v.dockerfileBuild(b)
	case BuildImage:
	default:
		v.add("build.kind", "%q is not a kind of build: use go (slipway compiles the Go module), dockerfile (buildah builds the repository's Dockerfile) or image (images built elsewhere)", b.Kind)
	}
}

// dockerfileBuild checks the fields of a dockerfile build.
func (v *validator) dockerfileBuild(b Build) {
	for _, f := range goFields {
		if v.written("build." + f) {
			v.add("build."+f, "applies to Go builds, and build.kind is dockerfile: remove build.%s (the Dockerfile says how to build)", f)
		}
	}
	ctxMsg := insideRepo(b.Context)
	if ctxMsg != "" {
		v.add("build.context", "%q %s, such as . or ./services/api", b.Context, ctxMsg)
	}
	switch {
	case b.Dockerfile == "":
		v.add("build.dockerfile", "is empty: name a file relative to build.context, such as Dockerfile or docker/Dockerfile.prod")
	case strings.HasPrefix(b.Dockerfile, "/"):
		v.add("build.dockerfile", "%q is an absolute path: name a file relative to build.context, such as Dockerfile or docker/Dockerfile.prod", b.Dockerfile)
	case strings.HasSuffix(b.Dockerfile, "/"):
		v.add("build.dockerfile", "%q names a directory: name a file relative to build.context, such as Dockerfile or docker/Dockerfile.prod", b.Dockerfile)
	case ctxMsg == "" && insideRepo(b.DockerfilePath()) != "":
		v.add("build.dockerfile", "%q in context %q leads out of the repository: name a file inside it", b.Dockerfile, b.Context)
	}
	if b.Target != "" && !stageName.MatchString(b.Target) {
		v.add("build.target", "%q is not a stage name: use the name of a FROM … AS NAME line of the Dockerfile, such as runtime", b.Target)
	}
	keys := make([]string, 0, len(b.Args))
	for k := range b.Args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !envName.MatchString(k) {
			v.add("build.args."+k, "%q is not a build argument name: use letters, digits and underscores, such as PYTHON_VERSION", k)
		}
	}
}

// insideRepo says what is wrong with p as a path inside the repository,
// "" when nothing is.
func insideRepo(p string) string {
	switch {
	case p == "":
		return "is empty"
	case strings.HasPrefix(p, "/"):
		return "is an absolute path: write it relative to the repository"
	case path.Clean(p) == ".." || strings.HasPrefix(path.Clean(p), "../"):
		return "leads out of the repository"
	}
	return ""
}
