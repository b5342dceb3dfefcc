package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestChainErrors checks each rule about how commits flow between
// environments: from and requireVerifiedOn name other environments of the
// file, something deploys a branch, and no loop keeps commits out.
func TestChainErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\nenvironments:\n"
	tests := []parseErrorCase{
		{"from an unknown environment", head + "  - name: dev\n  - name: staging\n    from: qa\n    listen: :8082\n  - name: prod\n",
			[]string{`f.yaml:7: environments[1].from: "qa" is not an environment in this file: name one of dev, staging, prod`}},
		{"from itself", head + "  - name: dev\n  - name: staging\n    from: staging\n    listen: :8082\n",
			[]string{`f.yaml:7: environments[1].from: an environment cannot take commits from itself`}},
		{"branch and from", head + "  - name: dev\n  - name: staging\n    branch: staging\n    from: dev\n    listen: :8082\n",
			[]string{`f.yaml:8: environments[1].from: "dev" and branch "staging" both feed environment "staging": keep one, branch to deploy every commit of a branch or from to deploy each commit once it is verified on dev`}},
		{"from on a controlled environment", head + "  - name: dev\n  - name: prod\n    from: dev\n",
			[]string{`f.yaml:7: environments[1].from: is for automatic environments: "prod" is controlled, so it deploys the commits released to its branch once they are verified on requireVerifiedOn; remove from, or set mode: automatic`}},
		{"requireVerifiedOn on an automatic environment", head + "  - name: dev\n  - name: staging\n    branch: staging\n    requireVerifiedOn: dev\n    listen: :8082\n",
			[]string{`f.yaml:8: environments[1].requireVerifiedOn: is for controlled environments: "staging" is automatic; to deploy each commit once it is verified on dev, write from: dev instead of branch`}},
		{"requireVerifiedOn unknown", head + "  - name: dev\n  - name: prod\n    requireVerifiedOn: qa\n",
			[]string{`f.yaml:7: environments[1].requireVerifiedOn: "qa" is not an environment in this file: name one of dev, prod`}},
		{"requireVerifiedOn itself", head + "  - name: dev\n  - name: prod\n    requireVerifiedOn: prod\n",
			[]string{`f.yaml:7: environments[1].requireVerifiedOn: an environment cannot require itself`}},
		{"controlled environment listed first", head + "  - name: prod\n  - name: dev\n",
			[]string{`f.yaml:5: environments[0].requireVerifiedOn: environment "prod" is controlled and listed first, so nothing verifies its commits: list it after the environment they must be verified on, or name that environment here, such as requireVerifiedOn: dev`}},
		{"two controlled environments on one branch", head + "  - name: dev\n  - name: prod\n  - name: eu\n    mode: controlled\n    branch: release\n    listen: :8082\n",
			[]string{`f.yaml:9: environments[2].branch: "release" is also the branch of controlled environment "prod": a release to one would be a release to the other; give each controlled environment its own branch`}},
		{"duplicate names", head + "  - name: dev\n  - name: dev\n    listen: :8082\n",
			[]string{`f.yaml:6: environments[1].name: "dev" is used by another environment: names must be unique`}},
		{"loop through from", head + "  - name: dev\n    from: staging\n  - name: staging\n    from: dev\n    listen: :8082\n",
			[]string{
				`f.yaml:4: environments: no environment deploys a branch: make one automatic with a branch, such as - name: dev (branch master by default), and feed the others from it`,
				`f.yaml:6: environments[0].from: "staging" closes a loop: dev takes its commits from staging, staging takes its commits from dev; no commit could ever get in: point one of them at an environment outside the loop`,
			}},
		{"loop of three", head + "  - name: dev\n  - name: a\n    from: c\n    listen: :8082\n  - name: b\n    from: a\n    listen: :8083\n  - name: c\n    from: b\n    listen: :8084\n",
			[]string{`f.yaml:7: environments[1].from: "c" closes a loop: a takes its commits from c, c takes its commits from b, b takes its commits from a; no commit could ever get in: point one of them at an environment outside the loop`}},
		{"loop through requireVerifiedOn and from", head + "  - name: dev\n  - name: qa\n    from: prod\n    listen: :8082\n  - name: prod\n    requireVerifiedOn: qa\n",
			[]string{`f.yaml:7: environments[1].from: "prod" closes a loop: qa takes its commits from prod, prod requires them verified on qa; no commit could ever get in: point one of them at an environment outside the loop`}},
		{"loop through requireVerifiedOn", head + "  - name: dev\n  - name: a\n    mode: controlled\n    branch: a\n    requireVerifiedOn: b\n    listen: :8082\n  - name: b\n    mode: controlled\n    branch: b\n    listen: :8083\n",
			[]string{`f.yaml:9: environments[1].requireVerifiedOn: "b" closes a loop: a requires them verified on b, b requires them verified on a; no commit could ever get in: point one of them at an environment outside the loop`}},
	}
	checkParseErrors(t, tests)
}

// TestChainDefaults checks the defaults that depend on the other fields
// and on where an environment is listed, and that several automatic and
// several controlled environments are accepted.
func TestChainDefaults(t *testing.T) {
	type env struct{ Name, Branch, From, Mode, Verified string }
	tests := []struct {
		name, envs string
		want       []env
	}{
		{"dev and prod", "",
			[]env{{"dev", "master", "", ModeAutomatic, ""}, {"prod", "release", "", ModeControlled, "dev"}}},
		{"staging from dev, prod after it", "  - name: dev\n  - name: staging\n    from: dev\n    listen: :8082\n  - name: prod\n",
			[]env{{"dev", "master", "", ModeAutomatic, ""}, {"staging", "", "dev", ModeAutomatic, ""}, {"prod", "release", "", ModeControlled, "staging"}}},
		{"dev from another environment drops master", "  - name: ci\n    branch: main\n    listen: :8082\n  - name: dev\n    from: ci\n  - name: prod\n    requireVerifiedOn: ci\n",
			[]env{{"ci", "main", "", ModeAutomatic, ""}, {"dev", "", "ci", ModeAutomatic, ""}, {"prod", "release", "", ModeControlled, "ci"}}},
		{"prod made automatic", "  - name: dev\n  - name: prod\n    mode: automatic\n    from: dev\n",
			[]env{{"dev", "master", "", ModeAutomatic, ""}, {"prod", "", "dev", ModeAutomatic, ""}}},
		{"several of each", "  - name: dev\n  - name: qa\n    branch: qa\n    listen: :8082\n  - name: prod\n  - name: eu\n    mode: controlled\n    branch: release-eu\n    listen: :8083\n",
			[]env{{"dev", "master", "", ModeAutomatic, ""}, {"qa", "qa", "", ModeAutomatic, ""}, {"prod", "release", "", ModeControlled, "qa"}, {"eu", "release-eu", "", ModeControlled, "prod"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := "app: demo\nrepo:\n  url: ./app.git\n"
			if tt.envs != "" {
				in += "environments:\n" + tt.envs
			}
			c, err := Parse("f.yaml", strings.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			var got []env
			for _, e := range c.Environments {
				got = append(got, env{e.Name, e.Branch, e.From, e.Mode, e.RequireVerifiedOn})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("environments (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidateEmptyVerifiedOn checks that Validate reads an empty
// requireVerifiedOn of a controlled environment as the environment listed
// before it, as Parse fills it in, for configurations built in code.
func TestValidateEmptyVerifiedOn(t *testing.T) {
	c := Default()
	c.App, c.Repo.URL = "demo", "/srv/demo.git"
	c.Environments = []Environment{DefaultEnvironment("dev"), DefaultEnvironment("prod")}
	if err := c.Validate(); err != nil {
		t.Errorf("dev and prod from DefaultEnvironment: %v", err)
	}
	c.Environments = []Environment{DefaultEnvironment("prod"), DefaultEnvironment("dev")}
	if err := c.Validate(); err == nil {
		t.Error("prod listed before dev without requireVerifiedOn: Validate accepted it")
	}
}

func TestFinalEnvironmentAndEnvTag(t *testing.T) {
	c, err := Parse("f.yaml", strings.NewReader("app: demo\nrepo:\n  url: ./app.git\nenvironments:\n  - name: dev\n  - name: staging\n    from: dev\n    listen: :8082\n  - name: prod\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.FinalEnvironment().Name; got != "prod" {
		t.Errorf("FinalEnvironment = %q, want prod", got)
	}
	if got := (&Config{}).FinalEnvironment(); got.Name != "" {
		t.Errorf("FinalEnvironment of no environments = %+v, want the zero Environment", got)
	}
	if got := EnvTag("staging"); got != "env-staging" {
		t.Errorf("EnvTag = %q, want env-staging", got)
	}
}

func TestBuildConcurrency(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	c, err := Parse("f.yaml", strings.NewReader(head+"build:\n  concurrency: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Build.Concurrency != 3 {
		t.Errorf("build.concurrency = %d, want 3", c.Build.Concurrency)
	}
	if n := DefaultBuildConcurrency(); n < 1 {
		t.Errorf("DefaultBuildConcurrency = %d, want at least 1", n)
	}
	checkParseErrors(t, []parseErrorCase{
		{"negative", head + "build:\n  concurrency: -1\n",
			[]string{`f.yaml:5: build.concurrency: -1: give how many builds may run at once, at least 1, or leave it out for half the CPUs`}},
	})
}
