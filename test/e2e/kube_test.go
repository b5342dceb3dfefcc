//go:build integration

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/testenv"
)

// The controller's whole flow with runtime: kubernetes, on the test
// cluster: master → dev, release → prod, rollback, with status, the
// cluster's Deployments, the registry and git agreeing at each step. kwok
// runs no container, so the environments are checked through the cluster,
// not over HTTP, and the smoke test is left out.
func TestKubernetesFlow(t *testing.T) {
	k := newKubeCluster(t)
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	short, err := os.MkdirTemp("", "sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	e := &env{t: t}
	apiAddr := testenv.FreeAddr(t)
	e.apiURL = "http://" + apiAddr
	e.regAddr = testenv.FreeAddr(t)
	ws, err := demo.Prepare(context.Background(), demo.Options{Dir: filepath.Join(short, "demo"), DevAddr: testenv.FreeAddr(t), ProdAddr: testenv.FreeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.ws = ws

	prefix := k.prefix
	cfg, err := config.Load(ws.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Runtime = config.RuntimeKubernetes
	cfg.Kubernetes.Kubeconfig = k.kubeconfig
	cfg.Kubernetes.Namespace = prefix + "-{{.Environment}}"
	for i := range cfg.Environments {
		cfg.Environments[i].Smoke.Command = ""
	}
	f, err := os.Create(ws.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Write(f, cfg); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e.bin = buildSlipway(t, short)
	e.args = []string{"serve", "--config", ws.Config, "--data-dir", ws.DataDir, "--api-addr", apiAddr, "--registry-addr", e.regAddr}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
	e.startServe()
	tok, err := os.ReadFile(filepath.Join(ws.DataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TOKEN", strings.TrimSpace(string(tok)))

	// onCluster checks that the environment's Deployment runs the digest
	// status reports, with the replicas and commit label status says.
	onCluster := func(env, commit string) {
		t.Helper()
		k.checkDeployment(prefix+"-"+env, demo.AppName, envOf(e.status(), env), commit)
	}

	c0 := git(t, ws.Bare, "rev-parse", "master")
	e.waitFor("c0 on prod", func() bool {
		p := envOf(e.status(), "prod")
		return p.Commit != nil && *p.Commit == c0 && p.Healthy && p.Rollout == nil
	})
	rc0 := *envOf(e.status(), "prod").Release
	onCluster("prod", c0)
	if got, want := envOf(e.status(), "prod").URL, "http://"+demo.AppName+"."+prefix+"-prod.svc.cluster.local"; got != want {
		t.Errorf("prod's URL = %s, want its Service's cluster DNS name %s", got, want)
	}

	c1 := e.push("Say hi", func(dir string) {
		out, err := exec.Command("sh", "-c", `cd "$0" && grep -rl 'Hello, ' --include='*.go' . | xargs sed -i 's/\([^A-Za-z]\)Hello, /\1Hi, /'`, dir).CombinedOutput()
		if err != nil {
			t.Fatalf("edit the greeting: %v\n%s", err, out)
		}
	})
	e.waitFor("c1 verified on dev", func() bool {
		d := envOf(e.status(), "dev")
		return d.Commit != nil && *d.Commit == c1 && d.Healthy && d.Rollout == nil
	})
	onCluster("dev", c1)

	out, errOut, code := e.slipway("release")
	if code != 0 {
		t.Fatalf("release: exit %d\n%s%s", code, out, errOut)
	}
	rc1 := *envOf(e.status(), "prod").Release
	if rc1 == rc0 || !strings.Contains(out, rc1+" ("+c1[:7]+") is live on prod") {
		t.Errorf("release printed %q (release before: %s)", out, rc0)
	}
	onCluster("prod", c1)
	if got := git(t, ws.Bare, "rev-parse", rc1+"^{commit}"); got != c1 {
		t.Errorf("git: tag %s on %s, want %s", rc1, got, c1)
	}

	// slipway scale changes the Deployment's replicas only.
	out, errOut, code = e.slipway("scale", "prod=6")
	if code != 0 {
		t.Fatalf("scale prod=6: exit %d\n%s%s", code, out, errOut)
	}
	e.waitFor("6 prod replicas", func() bool {
		p := envOf(e.status(), "prod")
		return p.Replicas.Desired == 6 && p.Replicas.Ready == 6 && p.Healthy && p.Rollout == nil
	})
	onCluster("prod", c1)

	out, errOut, code = e.slipway("rollback")
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	e.waitFor("prod back on c0", func() bool {
		p := envOf(e.status(), "prod")
		return p.Commit != nil && *p.Commit == c0 && p.Healthy && p.Rollout == nil
	})
	onCluster("prod", c0)
	if got := git(t, ws.Bare, "rev-parse", "release"); got != c0 {
		t.Errorf("git: release at %s after the rollback, want %s", got, c0)
	}
	if hist, ok := k.kubectl("-n", prefix+"-prod", "rollout", "history", "deployment/"+demo.AppName); ok {
		t.Logf("kubectl rollout history of prod:\n%s", hist)
		for _, w := range []string{rc1 + " (commit " + c1[:12] + ") to prod: release", rc0 + " (commit " + c0[:12] + ") to prod: rollback"} {
			if !strings.Contains(hist, w) {
				t.Errorf("kubectl rollout history lacks %q", w)
			}
		}
	}
}
