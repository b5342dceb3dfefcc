package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden parses each testdata/*.yaml and compares the effective
// configuration (defaults filled in, inherited fields copied into each
// app) with testdata/*.golden.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.yaml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			s, err := LoadSet(file)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := WriteSet(&got, s); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("effective configuration (-want +got):\n%s", diff)
			}
			if !s.Multi {
				// Load reads a file of one app as LoadSet does.
				c, err := Load(file)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(s.Apps[0], c, cmpopts.IgnoreUnexported(Config{})); diff != "" {
					t.Errorf("Load and LoadSet differ (-set +load):\n%s", diff)
				}
			}
			// What WriteSet renders parses back to the same configuration
			// (but for a relative repository path, which is resolved again).
			again, err := ParseSet(file, &got)
			if err != nil {
				t.Fatalf("parse rendered configuration: %v", err)
			}
			opts := cmp.Options{cmpopts.IgnoreUnexported(Config{}), cmpopts.IgnoreFields(Config{}, "Repo.URL")}
			if diff := cmp.Diff(s, again, opts, cmpopts.IgnoreUnexported(Set{})); diff != "" {
				t.Errorf("round trip (-first +second):\n%s", diff)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("slipway.yaml", strings.NewReader("app: demo\nrepo:\n  url: /srv/demo.git\n"))
	if err != nil {
		t.Fatal(err)
	}
	type env struct {
		Name, Branch, Mode, Listen, Verified string
		Replicas                             int
	}
	var got []env
	for _, e := range c.Environments {
		got = append(got, env{e.Name, e.Branch, e.Mode, e.Listen, e.RequireVerifiedOn, e.Replicas})
	}
	want := []env{
		{"dev", "master", ModeAutomatic, "127.0.0.1:8081", "", 2},
		{"prod", "release", ModeControlled, ":8080", "dev", 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("environments (-want +got):\n%s", diff)
	}
	if c.Test.Command != "go test ./..." || c.Test.Timeout != 10*time.Minute || c.Build.Main != "." || c.Build.Port != 8080 {
		t.Errorf("test/build defaults = %+v %+v", c.Test, c.Build)
	}
	if got := c.ImageRepository("127.0.0.1:5000"); got != "127.0.0.1:5000/demo" {
		t.Errorf("ImageRepository = %q", got)
	}
	if got := c.PollInterval(); got != 2*time.Second {
		t.Errorf("PollInterval = %v, want 2s for a local repository", got)
	}
	prod, _ := c.Environment("prod")
	if got := prod.EnvironmentURL(); got != "http://127.0.0.1:8080" {
		t.Errorf("prod URL = %q", got)
	}
}

func TestRepoPathRelativeToFile(t *testing.T) {
	c, err := Parse("/srv/work/slipway.yaml", strings.NewReader("app: demo\nrepo: {url: app.git}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repo.URL != "/srv/work/app.git" {
		t.Errorf("repo.url = %q, want /srv/work/app.git", c.Repo.URL)
	}
}

// TestErrors checks that each mistake is reported with the file, line,
// field and what would be right.
func TestErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	tests := []parseErrorCase{
		{"unknown top-level field", head + "bulid:\n  port: 80\n",
			[]string{`f.yaml:4: bulid: unknown field "bulid"; did you mean "build"? Known fields: app, repo, test, build, registry, runtime, kubernetes, environments, notifications, freeze, gc, release, schema`}},
		{"unknown nested field", head + "build:\n  prot: 80\n",
			[]string{`f.yaml:5: build.prot: unknown field "prot" in build; did you mean "port"? Known fields: main, port, timeout, ldflags, tags, concurrency, kind, dockerfile, context, target, args, image`}},
		{"wrong type int", head + "build:\n  port: eighty\n",
			[]string{`f.yaml:5: build.port: want a whole number such as 3, got "eighty"`}},
		{"quoted number is a string", head + "build:\n  port: \"80\"\n",
			[]string{`f.yaml:5: build.port: want a whole number such as 3, got "80"`}},
		{"wrong type duration", head + "test:\n  timeout: 10\n",
			[]string{`f.yaml:5: test.timeout: want a duration such as 30s, 5m or 1h30m, got "10"`}},
		{"mapping for a string", head + "runtime:\n  kind: local\n",
			[]string{`f.yaml:5: runtime: want a string, got a mapping (key: value lines)`}},
		{"scalar for a mapping", head + "build: fast\n",
			[]string{`f.yaml:4: build: want a mapping with the fields main, port, timeout, ldflags, tags, concurrency, kind, dockerfile, context, target, args, image, got a single value`}},
		{"bool", head + "registry:\n  ref: localhost:5000\n  insecure: yes please\n",
			[]string{`f.yaml:6: registry.insecure: want true or false, got "yes please"`}},
		{"missing app", "repo:\n  url: ./app.git\n",
			[]string{`f.yaml:1: app: is required: the application's name, such as app: birthday-app`}},
		{"missing repo url", "app: demo\nrepo:\n  poll: 1s\n",
			[]string{`f.yaml:2: repo.url: is required: the app's git repository, a path or a file://, https:// or ssh:// URL`}},
		{"duplicate key", head + "app: other\n",
			[]string{`f.yaml:4: app: defined twice; keep one`}},
		{"bad yaml", "app: [demo\n",
			[]string{`f.yaml:1: not valid YAML: line 1: did not find expected ',' or ']'`}},
		{"bad app name", "app: Birthday_App\nrepo:\n  url: ./a\n",
			[]string{`f.yaml:1: app: "Birthday_App" is not a valid name: use 1-40 lowercase letters, digits and dashes, starting and ending with a letter or digit`}},
		{"bad runtime", head + "runtime: docker\n",
			[]string{`f.yaml:4: runtime: "docker" is not a runtime: use local or kubernetes`}},
		{"bad scheme", "app: demo\nrepo:\n  url: ftp://example.com/x.git\n",
			[]string{`f.yaml:3: repo.url: scheme "ftp" is not supported: use a path, file://, https:// or ssh://`}},
		{"registry with scheme", head + "registry:\n  ref: https://ghcr.io/org\n",
			[]string{`f.yaml:5: registry.ref: "https://ghcr.io/org" has a scheme: write the host without it, such as ghcr.io/org; set insecure: true for plain HTTP`}},
		{"new environment needs branch and listen", head + "environments:\n  - name: staging\n",
			[]string{
				`f.yaml:5: environments[0].branch: is required for environment "staging": the git branch it tracks, such as branch: staging; or from: dev to deploy each commit once it is verified on dev`,
				`f.yaml:5: environments[0].listen: is required for environment "staging" on the local runtime: its load balancer's address, such as listen: 127.0.0.1:8082`,
			}},
		{"environment problems", head + "environments:\n  - name: dev\n    replicas: 0\n    readinessPath: readyz\n  - name: prod\n    listen: 127.0.0.1:8081\n    requireVerifiedOn: qa\n",
			[]string{
				`f.yaml:6: environments[0].replicas: 0 is too few: run at least 1 replica`,
				`f.yaml:7: environments[0].readinessPath: "readyz" must be an HTTP path starting with /, such as /readyz`,
				`f.yaml:9: environments[1].listen: "127.0.0.1:8081" is already the address of environment "dev": give each environment its own`,
				`f.yaml:10: environments[1].requireVerifiedOn: "qa" is not an environment in this file: name one of dev, prod`,
			}},
		{"rollout that cannot progress", head + "environments:\n  - name: dev\n    rollout:\n      maxSurge: 0\n",
			[]string{`f.yaml:6: environments[0].rollout: maxSurge and maxUnavailable are both 0, so no replica could ever be replaced: set maxSurge: 1`}},
		{"front-end bounds", head + "environments:\n  - name: dev\n    frontend:\n      maxHeaderBytes: 100\n      bodyTimeout: 0s\n      maxConnections: 0\n      trustedProxies: [10.0.0.0/33, proxy.example.com]\n",
			[]string{
				`f.yaml:7: environments[0].frontend.maxHeaderBytes: 100 is too small for real clients: use at least 4096 (default 1048576)`,
				`f.yaml:8: environments[0].frontend.bodyTimeout: must be more than 0, such as 60s`,
				`f.yaml:9: environments[0].frontend.maxConnections: 0: allow at least 1 connection (default 10000)`,
				`f.yaml:10: environments[0].frontend.trustedProxies[0]: "10.0.0.0/33" is not an address or CIDR range: write it like 10.0.0.0/8 or 192.0.2.7`,
				`f.yaml:10: environments[0].frontend.trustedProxies[1]: "proxy.example.com" is not an address or CIDR range: write it like 10.0.0.0/8 or 192.0.2.7`,
			}},
		{"env map value missing", head + "environments:\n  - name: dev\n    env:\n      A:\n",
			[]string{`f.yaml:7: environments[0].env.A: has no value; write A: "" for an empty one`}},
		{"several problems at once", "app: demo\nrepo:\n  url: ./a\n  pol: 1s\ntest:\n  timeout: soon\n",
			[]string{
				`f.yaml:4: repo.pol: unknown field "pol" in repo; did you mean "poll"? Known fields: url, poll, webhookSecretEnv`,
				`f.yaml:6: test.timeout: want a duration such as 30s, 5m or 1h30m, got "soon"`,
			}},
	}
	checkParseErrors(t, tests)
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.App = "demo"
	c.Repo.URL = "/srv/demo.git"
	if err := c.Validate(); err != nil {
		t.Fatalf("Default plus app and repo: %v", err)
	}
	c.Build.Port = 0
	err := c.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "build.port" || fe.File != "" {
		t.Fatalf("Validate = %v, want a FieldError for build.port without a file", err)
	}
	if got, want := err.Error(), "build.port: 0 is not a TCP port: use 1-65535, such as 8080"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestIsLocalRepo(t *testing.T) {
	for u, want := range map[string]bool{
		"/srv/app.git":                  true,
		"./app.git":                     true,
		"app.git":                       true,
		"file:///srv/app.git":           true,
		"https://github.com/o/r.git":    false,
		"ssh://git@github.com/o/r.git":  false,
		"git@github.com:o/r.git":        false,
		"./dir:with/colon-after-slash/": true,
	} {
		if got := IsLocalRepo(u); got != want {
			t.Errorf("IsLocalRepo(%q) = %v, want %v", u, got, want)
		}
	}
}

// FuzzParse checks that no input makes Parse panic, and that every
// configuration it accepts is valid and renders to YAML it accepts again.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"testdata/full.yaml", "testdata/minimal.yaml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("app: demo\nrepo: {url: x}\nenvironments: [{name: a, branch: b, listen: ':1'}]\n")
	f.Add("app: &a demo\nrepo: {url: *a}\n")
	f.Add("- 1\n- 2\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse("fuzz.yaml", strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not match ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted configuration does not validate: %v", err)
		}
		var buf bytes.Buffer
		if err := Write(&buf, c); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse("fuzz.yaml", &buf); err != nil {
			t.Fatalf("rendered configuration is rejected: %v\n%s", err, buf.String())
		}
	})
}

func TestFieldErrors(t *testing.T) {
	_, err := Parse("f.yaml", strings.NewReader("app: x\nrepo:\n  url: a\nbuild:\n  port: 0\nruntime: k8s\n"))
	var got []string
	for _, fe := range FieldErrors(err) {
		got = append(got, fmt.Sprintf("%s:%d %s", fe.File, fe.Line, fe.Field))
	}
	if diff := cmp.Diff([]string{"f.yaml:5 build.port", "f.yaml:6 runtime"}, got); diff != "" {
		t.Errorf("FieldErrors (-want +got):\n%s", diff)
	}
}

func TestDatabaseURL(t *testing.T) {
	for _, tt := range []struct {
		name, runtime string
		env           Environment
		want          string
	}{
		{"local default", RuntimeLocal, Environment{}, "sqlite:$DATA_DIR/birthday-app.db"},
		{"local databaseURL", RuntimeLocal, Environment{DatabaseURL: "postgres://app@db/app"}, "postgres://app@db/app"},
		{"local env", RuntimeLocal, Environment{Env: map[string]string{"DATABASE_URL": "sqlite:/srv/app.db"}}, "sqlite:/srv/app.db"},
		{"databaseURL over env", RuntimeLocal, Environment{DatabaseURL: "sqlite:a.db", Env: map[string]string{"DATABASE_URL": "sqlite:b.db"}}, "sqlite:a.db"},
		{"kubernetes default", RuntimeKubernetes, Environment{}, ""},
		{"kubernetes databaseURL", RuntimeKubernetes, Environment{DatabaseURL: "postgres://app@db/app"}, "postgres://app@db/app"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.App, c.Runtime = "birthday-app", tt.runtime
			if got := c.DatabaseURL(tt.env); got != tt.want {
				t.Errorf("DatabaseURL = %q, want %q", got, tt.want)
			}
		})
	}
}

// parseErrorCase is a configuration that ParseSet (and Parse, for a file
// of one app) must refuse, with every message it must give, in order.
type parseErrorCase struct {
	name string
	yaml string
	want []string
}

// checkParseErrors parses each case as f.yaml with ParseSet and, unless
// it is in the apps form, with Parse, and compares the messages.
func checkParseErrors(t *testing.T, tests []parseErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s succeeded, want an error", what)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("%s: error does not match ErrInvalid: %v", what, err)
				}
				if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
					t.Errorf("%s: messages (-want +got):\n%s", what, diff)
				}
			}
			_, err := ParseSet("f.yaml", strings.NewReader(tt.yaml))
			check("ParseSet", err)
			if root, _ := readYAML("f.yaml", strings.NewReader(tt.yaml)); root != nil {
				if k, _ := mappingKey(root, "apps"); k != nil {
					return
				}
			}
			_, err = Parse("f.yaml", strings.NewReader(tt.yaml))
			check("Parse", err)
		})
	}
}
