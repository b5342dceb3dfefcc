package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSetOneApp(t *testing.T) {
	s, err := ParseSet("f.yaml", strings.NewReader("app: demo\nrepo:\n  url: /srv/demo.git\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Multi || len(s.Apps) != 1 || s.Apps[0].App != "demo" {
		t.Fatalf("ParseSet = %+v, want one app demo, not the apps form", s)
	}
	if s.BuildConcurrency != DefaultBuildConcurrency() {
		t.Errorf("BuildConcurrency = %d, want the default %d", s.BuildConcurrency, DefaultBuildConcurrency())
	}
	s, err = ParseSet("f.yaml", strings.NewReader("app: demo\nrepo:\n  url: /srv/demo.git\nbuild:\n  concurrency: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.BuildConcurrency != 5 {
		t.Errorf("BuildConcurrency = %d, want 5 from build.concurrency", s.BuildConcurrency)
	}
}

// TestSetInheritance checks that each app starts from the top level's
// registry, runtime and kubernetes, and overrides them field by field.
func TestSetInheritance(t *testing.T) {
	const file = `registry:
  ref: ghcr.io/team
runtime: kubernetes
kubernetes:
  context: shared
  namespace: "team-{{.App}}-{{.Environment}}"
apps:
  - app: web
    repo: {url: /srv/web.git}
  - app: api
    repo: {url: /srv/api.git}
    registry: {insecure: true}
    kubernetes: {progressDeadline: 3m}
  - app: tool
    repo: {url: /srv/tool.git}
    registry: {ref: localhost:5000}
    runtime: local
    environments:
      - name: dev
        listen: 127.0.0.1:9001
`
	s, err := ParseSet("f.yaml", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Multi {
		t.Error("Multi = false for the apps form")
	}
	if diff := cmp.Diff([]string{"web", "api", "tool"}, s.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	type inherited struct {
		Registry   Registry
		Runtime    string
		Kubernetes Kubernetes
	}
	want := map[string]inherited{
		"web":  {Registry{Ref: "ghcr.io/team"}, RuntimeKubernetes, Kubernetes{Context: "shared", Namespace: "team-{{.App}}-{{.Environment}}", ProgressDeadline: Default().Kubernetes.ProgressDeadline}},
		"api":  {Registry{Ref: "ghcr.io/team", Insecure: true}, RuntimeKubernetes, Kubernetes{Context: "shared", Namespace: "team-{{.App}}-{{.Environment}}", ProgressDeadline: 3 * time.Minute}},
		"tool": {Registry{Ref: "localhost:5000"}, RuntimeLocal, Kubernetes{Context: "shared", Namespace: "team-{{.App}}-{{.Environment}}", ProgressDeadline: Default().Kubernetes.ProgressDeadline}},
	}
	for name, w := range want {
		c, ok := s.App(name)
		if !ok {
			t.Fatalf("App(%q) not found", name)
		}
		if diff := cmp.Diff(w, inherited{c.Registry, c.Runtime, c.Kubernetes}); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
		if c.Test.Command != "go test ./..." || len(c.Environments) == 0 {
			t.Errorf("%s: defaults not applied: %+v", name, c)
		}
	}
	if _, ok := s.App("nope"); ok {
		t.Error("App(nope) found")
	}
	if got := s.Apps[1].ImageRepository("127.0.0.1:5000"); got != "ghcr.io/team/api" {
		t.Errorf("api's image repository = %q", got)
	}
}

// TestSetErrors checks mistakes of the apps form: where each key belongs,
// field paths led by the app, inherited mistakes reported once, and what
// two apps must not share.
func TestSetErrors(t *testing.T) {
	const web = "  - app: web\n    repo: {url: /srv/web.git}\n"
	const api = "  - app: api\n    repo: {url: /srv/api.git}\n"
	// Local apps need addresses of their own.
	const webEnvs = "    environments:\n      - name: dev\n        listen: 127.0.0.1:9001\n      - name: prod\n        listen: :9002\n"
	tests := []parseErrorCase{
		{"environments next to apps", "environments:\n  - name: dev\napps:\n" + web,
			[]string{`f.yaml:1: environments: belongs to each app in a file of several apps: move it into the apps entries, such as apps[0].environments`}},
		{"app next to apps", "app: web\napps:\n" + web,
			[]string{`f.yaml:1: app: belongs to each app in a file of several apps: move it into the apps entries, such as apps[0].app`}},
		{"unknown top-level key", "registy:\n  ref: ghcr.io/team\napps:\n" + web,
			[]string{`f.yaml:1: registy: unknown field "registy"; did you mean "registry"? Known fields: apps, registry, runtime, kubernetes, build, notifications`}},
		{"app's build at the top", "build:\n  main: ./cmd/web\n  concurrency: 2\napps:\n" + web,
			[]string{`f.yaml:2: build.main: belongs to each app's build in a file of several apps: move it there, such as apps[0].build.main; the top-level build holds only concurrency`}},
		{"concurrency in an app", "apps:\n" + web + "    build:\n      concurrency: 2\n",
			[]string{`f.yaml:5: apps[0].build.concurrency: is set once for all apps in a file of several apps: move it to the top level, build: {concurrency: N} beside apps`}},
		{"negative concurrency", "build:\n  concurrency: -2\napps:\n" + web,
			[]string{`f.yaml:2: build.concurrency: -2: give how many builds may run at once, at least 1, or leave it out for half the CPUs`}},
		{"no apps", "apps: []\n",
			[]string{`f.yaml:1: apps: is empty: list the apps, each written as the file of one app (app, repo, environments …)`}},
		{"apps not a list", "apps:\n  web: {}\n",
			[]string{`f.yaml:2: apps: want a list of apps (lines starting with "- app: "), got a mapping (key: value lines)`}},
		{"apps twice", "apps:\n" + web + "apps:\n" + api,
			[]string{`f.yaml:4: apps: defined twice; keep one`}},
		{"unknown key in an app", "apps:\n" + web + "    bulid: {}\n",
			[]string{`f.yaml:4: apps[0].bulid: unknown field "bulid" in apps[0]; did you mean "build"? Known fields: app, repo, test, build, registry, runtime, kubernetes, environments, notifications, freeze, gc, release, schema`}},
		{"wrong type in an app", "apps:\n" + web + webEnvs + api + "    environments:\n      - name: dev\n        listen: 127.0.0.1:9003\n        replicas: two\n      - name: prod\n        listen: :9004\n",
			[]string{`f.yaml:14: apps[1].environments[0].replicas: want a whole number such as 3, got "two"`}},
		{"invalid field in an app", "apps:\n" + web + webEnvs + api + "    environments:\n      - name: dev\n        listen: nowhere\n      - name: prod\n        listen: :9004\n",
			[]string{`f.yaml:13: apps[1].environments[0].listen: "nowhere" is not an address: use host:port or :port, such as 127.0.0.1:8081`}},
		{"inherited mistake reported once", "runtime: docker\napps:\n" + web + api,
			[]string{`f.yaml:1: runtime: "docker" is not a runtime: use local or kubernetes`}},
		{"inherited mistake beside an app's own field", "runtime: kubernetes\nregistry:\n  ref: https://ghcr.io/team\napps:\n" + web + "    registry: {insecure: true}\n" + api,
			[]string{`f.yaml:3: registry.ref: "https://ghcr.io/team" has a scheme: write the host without it, such as ghcr.io/org; set insecure: true for plain HTTP`}},
		{"an app's own override of an inherited field", "registry: {ref: ghcr.io/team}\napps:\n" + web + "    registry: {ref: \"https://ghcr.io/web\"}\n",
			[]string{`f.yaml:5: apps[0].registry.ref: "https://ghcr.io/web" has a scheme: write the host without it, such as ghcr.io/org; set insecure: true for plain HTTP`}},
		{"two apps of one name", "runtime: kubernetes\napps:\n" + web + web,
			[]string{`f.yaml:5: apps[1].app: "web" is also the name of apps[0]: give each app its own name; it names the app's image repository (REGISTRY/web), its data and its namespaces`}},
		{"default addresses", "apps:\n" + web + api,
			[]string{
				`f.yaml:4: apps[1].environments[0].listen: "127.0.0.1:8081" is also where app "web" environment "dev" listens (apps[0].environments[0].listen "127.0.0.1:8081"): give each environment of each app its own address`,
				`f.yaml:4: apps[1].environments[1].listen: ":8080" is also where app "web" environment "prod" listens (apps[0].environments[1].listen ":8080"): give each environment of each app its own address`,
			}},
		{"two apps on one address", "apps:\n" + web + webEnvs + api + "    environments:\n      - name: dev\n        listen: 127.0.0.1:9001\n      - name: prod\n        listen: 0.0.0.0:9002\n",
			[]string{
				`f.yaml:13: apps[1].environments[0].listen: "127.0.0.1:9001" is also where app "web" environment "dev" listens (apps[0].environments[0].listen "127.0.0.1:9001"): give each environment of each app its own address`,
				`f.yaml:15: apps[1].environments[1].listen: "0.0.0.0:9002" is also where app "web" environment "prod" listens (apps[0].environments[1].listen ":9002"): give each environment of each app its own address`,
			}},
		{"an app's redirect on another's address", "apps:\n" + web + webEnvs + api + "    environments:\n      - name: dev\n        listen: 127.0.0.1:9003\n      - name: prod\n        listen: :9443\n        frontend:\n          tls:\n            certFile: c.pem\n            keyFile: k.pem\n            redirectFrom: :9002\n",
			[]string{`f.yaml:20: apps[1].environments[1].frontend.tls.redirectFrom: ":9002" is also where app "web" environment "prod" listens (apps[0].environments[1].listen ":9002"): give each environment of each app its own address`}},
		{"two apps in one namespace", "runtime: kubernetes\nkubernetes:\n  namespace: \"shared-{{.Environment}}\"\napps:\n" + web + api,
			[]string{
				`f.yaml:3: kubernetes.namespace: makes environment "dev"'s namespace "shared-dev", which is also that of app "web" environment "dev" in the same cluster: give each app's environments namespaces of their own, such as with the default {{.App}}-{{.Environment}}`,
				`f.yaml:3: kubernetes.namespace: makes environment "prod"'s namespace "shared-prod", which is also that of app "web" environment "prod" in the same cluster: give each app's environments namespaces of their own, such as with the default {{.App}}-{{.Environment}}`,
			}},
		{"an environment's namespace", "runtime: kubernetes\napps:\n" + web + api + "    environments:\n      - name: dev\n        kubernetes: {namespace: web-prod}\n      - name: prod\n",
			[]string{`f.yaml:9: apps[1].environments[0].kubernetes.namespace: makes environment "dev"'s namespace "web-prod", which is also that of app "web" environment "prod" in the same cluster: give each app's environments namespaces of their own, such as with the default {{.App}}-{{.Environment}}`}},
	}
	checkParseErrors(t, tests)
}

// TestSetNoConflict checks what two apps may share: the namespace names
// of two clusters, and addresses on two hosts or of the kubernetes
// runtime, where listen is not used.
func TestSetNoConflict(t *testing.T) {
	for name, file := range map[string]string{
		"two clusters": "runtime: kubernetes\nkubernetes:\n  namespace: \"shared-{{.Environment}}\"\napps:\n  - app: web\n    repo: {url: /srv/web.git}\n  - app: api\n    repo: {url: /srv/api.git}\n    kubernetes: {context: other}\n",
		"two hosts":    "apps:\n  - app: web\n    repo: {url: /srv/web.git}\n    environments:\n      - {name: dev, listen: '127.0.0.1:9001'}\n      - {name: prod, listen: '127.0.0.1:9002'}\n  - app: api\n    repo: {url: /srv/api.git}\n    environments:\n      - {name: dev, listen: '127.0.0.2:9001'}\n      - {name: prod, listen: '127.0.0.2:9002'}\n",
		"kubernetes":   "runtime: kubernetes\napps:\n  - app: web\n    repo: {url: /srv/web.git}\n  - app: api\n    repo: {url: /srv/api.git}\n",
	} {
		if _, err := ParseSet("f.yaml", strings.NewReader(file)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseRefusesApps(t *testing.T) {
	_, err := Parse("f.yaml", strings.NewReader("apps:\n  - app: web\n    repo: {url: /srv/web.git}\n"))
	want := `f.yaml:1: apps: the file holds several apps, where the file of one app is wanted (app, repo and environments at the top)`
	if err == nil || !errors.Is(err, ErrInvalid) || err.Error() != want {
		t.Errorf("Parse = %v, want %s", err, want)
	}
}

// TestSetValidateInCode checks a Set built in code: field paths follow
// Multi, and an empty Set is refused.
func TestSetValidateInCode(t *testing.T) {
	app := func(name string) *Config {
		c := Default()
		c.App, c.Repo.URL = name, "/srv/"+name+".git"
		return c
	}
	bad := app("web")
	bad.Build.Port = 0
	err := (&Set{Apps: []*Config{app("api"), bad}, Multi: true}).Validate()
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`apps[1].build.port: 0 is not a TCP port: use 1-65535, such as 8080`,
		`apps[1].environments[0].listen: "127.0.0.1:8081" is also where app "api" environment "dev" listens (apps[0].environments[0].listen "127.0.0.1:8081"): give each environment of each app its own address`,
		`apps[1].environments[1].listen: ":8080" is also where app "api" environment "prod" listens (apps[0].environments[1].listen ":8080"): give each environment of each app its own address`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if err := (&Set{}).Validate(); err == nil {
		t.Error("an empty Set is valid")
	}
}

// FuzzParseSet checks that no input makes ParseSet panic, and that every
// set it accepts is valid and renders to YAML it accepts again.
func FuzzParseSet(f *testing.F) {
	for _, file := range []string{"testdata/apps.yaml", "testdata/minimal.yaml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("apps:\n  - app: a\n    repo: {url: x}\n  - app: b\n    repo: {url: y}\n    environments: [{name: dev, listen: ':1'}]\n")
	f.Add("runtime: kubernetes\nbuild: {concurrency: 2}\napps: [{app: a, repo: {url: x}}]\n")
	f.Add("apps: &a [1]\nx: *a\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSet("fuzz.yaml", strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not match ErrInvalid: %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted set does not validate: %v", err)
		}
		var buf bytes.Buffer
		if err := WriteSet(&buf, s); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseSet("fuzz.yaml", &buf); err != nil {
			t.Fatalf("rendered set is rejected: %v\n%s", err, buf.String())
		}
	})
}
