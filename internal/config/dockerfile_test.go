package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBuildKindDefaults checks which kind of build a file gets and the
// defaults of a dockerfile build.
func TestBuildKindDefaults(t *testing.T) {
	const head = "app: demo\nrepo: {url: ./app.git}\n"
	type got struct {
		Kind, Dockerfile, Context, Target, Test, Path string
		Args                                          map[string]string
	}
	tests := []struct {
		name, yaml string
		want       got
	}{
		{"nothing set: go", head, got{Kind: BuildGo, Test: "go test ./..."}},
		{"kind dockerfile", head + "build: {kind: dockerfile}\n",
			got{Kind: BuildDockerfile, Dockerfile: "Dockerfile", Context: ".", Path: "Dockerfile"}},
		{"a dockerfile field without kind", head + "build: {dockerfile: docker/Dockerfile.prod}\n",
			got{Kind: BuildDockerfile, Dockerfile: "docker/Dockerfile.prod", Context: ".", Path: "docker/Dockerfile.prod"}},
		{"context, target and args", head + "build:\n  context: services/api\n  target: runtime\n  args: {PY: \"3.11\"}\n",
			got{Kind: BuildDockerfile, Dockerfile: "Dockerfile", Context: "services/api", Target: "runtime", Path: "services/api/Dockerfile", Args: map[string]string{"PY": "3.11"}}},
		{"a Dockerfile beside the context", head + "build: {context: api, dockerfile: ../docker/api.Dockerfile}\n",
			got{Kind: BuildDockerfile, Dockerfile: "../docker/api.Dockerfile", Context: "api", Path: "docker/api.Dockerfile"}},
		{"a test command of its own", head + "build: {kind: dockerfile}\ntest: {command: python3 -m unittest}\n",
			got{Kind: BuildDockerfile, Dockerfile: "Dockerfile", Context: ".", Test: "python3 -m unittest", Path: "Dockerfile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.yaml", strings.NewReader(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			b := c.Build
			g := got{Kind: b.Kind, Dockerfile: b.Dockerfile, Context: b.Context, Target: b.Target, Test: c.Test.Command, Path: b.DockerfilePath(), Args: b.Args}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("build (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildKindErrors checks that a wrong kind or a field of the other
// kind is refused with the field and the fix.
func TestBuildKindErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	checkParseErrors(t, []parseErrorCase{
		{"unknown kind", head + "build:\n  kind: docker\n",
			[]string{`f.yaml:5: build.kind: "docker" is not a kind of build: use go (slipway compiles the Go module), dockerfile (buildah builds the repository's Dockerfile) or image (images built elsewhere)`}},
		{"dockerfile field on a go build", head + "build:\n  kind: go\n  target: runtime\n",
			[]string{`f.yaml:6: build.target: applies to Dockerfile builds, and build.kind is go: set build.kind: dockerfile, or remove build.target`}},
		{"go field on a dockerfile build", head + "build:\n  kind: dockerfile\n  main: ./cmd/server\n",
			[]string{`f.yaml:6: build.main: applies to Go builds, and build.kind is dockerfile: remove build.main (the Dockerfile says how to build)`}},
		{"absolute context", head + "build:\n  context: /srv/app\n",
			[]string{`f.yaml:5: build.context: "/srv/app" is an absolute path: write it relative to the repository, such as . or ./services/api`}},
		{"dockerfile out of the repository", head + "build:\n  context: api\n  dockerfile: ../../Dockerfile\n",
			[]string{`f.yaml:6: build.dockerfile: "../../Dockerfile" in context "api" leads out of the repository: name a file inside it`}},
		{"dockerfile a directory", head + "build:\n  dockerfile: docker/\n",
			[]string{`f.yaml:5: build.dockerfile: "docker/" names a directory: name a file relative to build.context, such as Dockerfile or docker/Dockerfile.prod`}},
		{"dockerfile beside the context", head + "build:\n  context: api\n  dockerfile: /Dockerfile\n",
			[]string{`f.yaml:6: build.dockerfile: "/Dockerfile" is an absolute path: name a file relative to build.context, such as Dockerfile or docker/Dockerfile.prod`}},
		{"bad target", head + "build:\n  target: 2nd stage\n",
			[]string{`f.yaml:5: build.target: "2nd stage" is not a stage name: use the name of a FROM … AS NAME line of the Dockerfile, such as runtime`}},
		{"bad arg name", head + "build:\n  args:\n    PY-VERSION: \"3\"\n",
			[]string{`f.yaml:6: build.args.PY-VERSION: "PY-VERSION" is not a build argument name: use letters, digits and underscores, such as PYTHON_VERSION`}},
		{"empty test command on a go build", head + "test:\n  command: \"\"\n",
			[]string{`f.yaml:5: test.command: is empty: give the test command (default go test ./...), or "true" to skip tests on purpose`}},
		{"dockerfile fields at the top of the apps form", "build:\n  kind: dockerfile\napps:\n  - app: a\n    repo: {url: ./a.git}\n",
			[]string{`f.yaml:2: build.kind: belongs to each app's build in a file of several apps: move it there, such as apps[0].build.kind; the top-level build holds only concurrency`}},
	})
}
