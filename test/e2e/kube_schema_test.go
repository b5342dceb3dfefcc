//go:build integration

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// TestKubernetesMigrations is TestMigrationsEndToEnd's scenario with
// runtime: kubernetes on the test cluster: the same releases refused and
// allowed, the same rollbacks refused and allowed. The release phase runs
// as a Job in prod's namespace for each release that goes out (kwok
// completes its pod: no migration really runs, and no database is read),
// and no Job is made for a refused release or for a rollback. Status and
// history show each release's schema.
func TestKubernetesMigrations(t *testing.T) {
	t.Parallel()
	k := newKubeCluster(t)
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	short, err := os.MkdirTemp("", "swkm")
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
	// No pod connects to it: the Jobs carry it.
	dbURL := func(env string) string { return "postgres://birthday@db.example.internal/birthday_" + env }
	editConfig(t, ws.Config, func(c *config.Config) {
		migrationsConfig(c, dbURL)
		c.Runtime = config.RuntimeKubernetes
		c.Kubernetes.Kubeconfig = k.kubeconfig
		c.Kubernetes.Namespace = k.prefix + "-{{.Environment}}"
	})
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
	e.cliArgs = []string{"--data-dir", ws.DataDir} // in parallel: no SLIPWAY_TOKEN
	prod := k.prefix + "-prod"

	migrationsRun{
		e:      e,
		client: api.NewClient(e.apiURL, strings.TrimSpace(string(tok))),
		serving: func(commit, rc string) {
			t.Helper()
			e.waitFor(rc+" on prod", func() bool {
				p := envOf(e.status(), "prod")
				return p.Commit != nil && *p.Commit == commit && p.Release != nil && *p.Release == rc && p.Healthy && p.Rollout == nil
			})
			k.checkDeployment(prod, demo.AppName, envOf(e.status(), "prod"), commit)
			if got := git(t, ws.Bare, "rev-parse", "release"); got != commit {
				t.Errorf("git: release at %s, want %s", got, commit)
			}
		},
		phases: func(ran, skipped []ledger.Deployment) {
			list, err := k.cs.BatchV1().Jobs(prod).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelReleasePhase})
			if err != nil {
				t.Fatal(err)
			}
			jobs := map[string]batchv1.Job{}
			for _, j := range list.Items {
				jobs[j.Labels[kube.LabelReleasePhase]] = j
			}
			for _, d := range ran {
				j, ok := jobs[strconv.FormatInt(d.ID, 10)]
				if !ok {
					t.Errorf("release of %s (deployment %d): no Job of its release phase in %s", d.Commit[:7], d.ID, prod)
					continue
				}
				c := j.Spec.Template.Spec.Containers[0]
				env := map[string]string{}
				for _, v := range c.Env {
					env[v.Name] = v.Value
				}
				if j.Status.Succeeded != 1 || c.Image != d.Image || strings.Join(c.Command, " ") != "/app/"+demo.AppName+" migrate" ||
					env["DATABASE_URL"] != dbURL("prod") || env["MIGRATE_ON_START"] != "false" {
					t.Errorf("release of %s (deployment %d): Job %s succeeded %d, runs %v of %s with DATABASE_URL=%s MIGRATE_ON_START=%s; want %s migrate of %s with %s",
						d.Commit[:7], d.ID, j.Name, j.Status.Succeeded, c.Command, c.Image, env["DATABASE_URL"], env["MIGRATE_ON_START"], "/app/"+demo.AppName, d.Image, dbURL("prod"))
				}
			}
			for _, d := range skipped {
				if j, ok := jobs[strconv.FormatInt(d.ID, 10)]; ok {
					t.Errorf("%s %s of %s (deployment %d) made the Job %s", d.State, d.Kind, d.Commit[:7], d.ID, j.Name)
				}
			}
			if len(jobs) != len(ran) {
				t.Errorf("%d release-phase Jobs in %s, want one for each of the %d releases that went out", len(jobs), prod, len(ran))
			}
		},
	}.run(t)
}
