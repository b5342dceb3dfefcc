//go:build integration

package crash

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// The same crashes on the kubernetes runtime, against the test cluster
// (scripts/testcluster): serve is killed at the points where it talks to
// the runtime (rollouts, the release phase's Job, scale) and where it moves
// what says what runs (tags, branch), started again, and the cluster's
// Deployments, status, the ledger, the registry and git must agree, with
// one deployment per flow and one release-phase Job per deployment. kwok
// plays the pods and runs no container, so no request is sent to the
// environments: what runs is read from the cluster.

// kubeScenarios run in parallel, each a slipway of its own with dev →
// staging (from dev) → prod, a release command on every environment.
var kubeScenarios = []struct {
	name  string
	cases []crashCase
}{
	// A push builds the sample app (a minute or more on a busy machine):
	// few push cases.
	{"kube-push", []crashCase{
		{"release.job", push}, {"deploy.rollout", push}, {"deploy.rolledout", push},
	}},
	{"kube-release", []crashCase{
		{"release.phase", release}, {"promote.rollout", rollback},
		{"release.phased", release}, {"promote.rolledout", rollback},
		{"tag.env", release}, {"branch.move", rollback},
		{"release.job", release}, {"change.rollout", scaleUp},
	}},
}

// releaseCommand is every environment's release phase; kwok completes its
// Job's pod at once.
var releaseCommand = config.Command{"/" + demo.AppName, "migrate"}

// TestKubernetesCrashPoints runs the kube scenarios. Together with
// TestCrashPoints they reach every crash point (TestEveryPointIsCovered).
func TestKubernetesCrashPoints(t *testing.T) {
	t.Parallel() // beside TestCrashPoints
	kubeconfig := testenv.Env(t, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
	slipwayBinary(t)
	for _, sc := range kubeScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			started := time.Now()
			w := newKubeWorld(t, kubeconfig)
			s := &kubeScenario{scenario: scenario{w: w.world, prodHist: []string{w.baseline(sc.cases, started)}}, k: w}
			runCases(t, sc.cases, s.run)
			t.Logf("scenario %s: %d crashes in %s", sc.name, len(sc.cases), time.Since(started).Round(time.Second))
		})
	}
}

// kubeWorld is a world whose environments are namespaces of the test
// cluster.
type kubeWorld struct {
	*world
	cs     kubernetes.Interface
	prefix string // of the namespaces: PREFIX-ENV
}

func newKubeWorld(t *testing.T, kubeconfig string) *kubeWorld {
	t.Helper()
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	root, err := os.MkdirTemp("", "swk")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	k := &kubeWorld{world: &world{t: t, root: root, urls: map[string]string{}, bin: slipwayBinary(t)}, prefix: "kc" + hex.EncodeToString(b)}
	w := k.world
	rc, err := kube.RESTConfig(config.Kubernetes{Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	if k.cs, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	apiAddr := testenv.FreeAddr(t)
	w.apiURL, w.reg = "http://"+apiAddr, testenv.FreeAddr(t)
	ws, err := demo.Prepare(context.Background(), demo.Options{Dir: filepath.Join(root, "demo"), DevAddr: testenv.FreeAddr(t), ProdAddr: testenv.FreeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	w.ws = ws
	w.hooks = startReceiver(t)
	k.writeConfig(kubeconfig)
	w.crashAt, w.record = filepath.Join(root, "crash-at"), filepath.Join(root, "crash-record")
	if err := os.WriteFile(w.crashAt, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.args = []string{"serve", "--config", ws.Config, "--data-dir", ws.DataDir, "--api-addr", apiAddr, "--registry-addr", w.reg}
	t.Cleanup(func() {
		if w.serve != nil {
			w.stopServe()
		}
		ctx := context.Background()
		for _, e := range envs {
			k.cs.CoreV1().Namespaces().Delete(ctx, k.prefix+"-"+e, metav1.DeleteOptions{})
		}
		if !t.Failed() {
			os.RemoveAll(root)
		} else {
			t.Logf("kept %s", root)
		}
	})
	return k
}

// writeConfig writes dev (1 replica) → staging (from dev, 1) → prod (2,
// released from commits verified on staging) on the kubernetes runtime,
// each with the release command, no smoke test (kwok runs nothing), no
// app tests.
func (k *kubeWorld) writeConfig(kubeconfig string) {
	c := demo.Config("", "")
	c.Runtime = config.RuntimeKubernetes
	c.Kubernetes.Kubeconfig = kubeconfig
	c.Kubernetes.Namespace = k.prefix + "-{{.Environment}}"
	c.Repo.Poll = 300 * time.Millisecond
	// The local matrix crashes builds; here a build only makes the image,
	// without the app's tests, to keep the pushes short.
	c.Test.Command = "true"
	c.Release.Command = releaseCommand
	c.Release.Timeout = time.Minute
	var out []config.Environment
	for _, e := range c.Environments {
		e.Smoke.Command = ""
		e.Listen = ""
		switch e.Name {
		case "dev":
			e.Replicas = 1
			out = append(out, e)
			s := config.DefaultEnvironment("staging")
			s.From, s.Replicas = "dev", 1
			out = append(out, s)
		case "prod":
			e.Replicas = 2
			e.RequireVerifiedOn = "staging"
			out = append(out, e)
		}
	}
	c.Environments = out
	var buf bytes.Buffer
	if err := config.Write(&buf, c); err != nil {
		k.t.Fatal(err)
	}
	buf.WriteString(k.hooks.config())
	if err := os.WriteFile(k.ws.Config, buf.Bytes(), 0o644); err != nil {
		k.t.Fatal(err)
	}
}

type kubeScenario struct {
	scenario
	k *kubeWorld
}

// run arms c's point, starts c's flow, waits for serve to die there, starts
// it again, waits until the flow's end state, and checks.
func (s *kubeScenario) run(c crashCase) {
	w, t := s.w, s.w.t
	t.Helper()
	began := time.Now()
	ctx := context.Background()
	os.Remove(w.record)
	if err := os.WriteFile(w.crashAt, []byte(c.at), 0o644); err != nil {
		t.Fatal(err)
	}
	lastID := w.lastDeploymentID()
	st, _ := w.status()
	prod := deref(envOf(st, "prod").Commit)
	var done func(pipeline.Status) bool
	var phased []string // the environments that take a new image: one release phase each
	switch c.flow {
	case push:
		commit := w.push("crash at " + c.at)
		done = func(st pipeline.Status) bool {
			return runs(st, "dev", commit) && runs(st, "staging", commit) && runs(st, "prod", prod)
		}
		phased = []string{"dev", "staging"}
	case release:
		want := deref(envOf(st, "staging").Commit)
		if want == prod {
			t.Fatalf("%s: nothing to release: staging and prod run %s", c.at, prod[:7])
		}
		_, err := w.client().Release(ctx, "", api.ReleaseRequest{})
		s.apiErr(c, err)
		done = func(st pipeline.Status) bool { return runs(st, "prod", want) }
		phased = []string{"prod"}
	case rollback:
		want := s.prodHist[len(s.prodHist)-2]
		_, err := w.client().Rollback(ctx, "", api.RollbackRequest{})
		s.apiErr(c, err)
		done = func(st pipeline.Status) bool { return runs(st, "prod", want) }
	case scaleUp:
		_, err := w.client().Scale(ctx, "", "prod", 3)
		s.apiErr(c, err)
		done = func(st pipeline.Status) bool {
			return runs(st, "prod", prod) && envOf(st, "prod").Replicas.Desired == 3
		}
	default:
		t.Fatalf("%s: no flow %s on the kubernetes runtime", c.at, c.flow)
	}

	w.waitFor("the crash at "+c.at, func() bool { _, err := os.Stat(w.record); return err == nil })
	crashed := time.Now()
	if err := os.WriteFile(w.crashAt, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitFor("serve to die", func() bool { ok, _ := w.serveExited(); return ok })
	w.serve = nil
	w.startServe()

	w.waitFor("the end of the "+c.flow+" after the crash at "+c.at, func() bool {
		st, ok := w.status()
		if !ok || !done(st) {
			return false
		}
		for _, e := range envs {
			if envOf(st, e).Rollout != nil {
				return false
			}
		}
		return w.inFlight() == 0
	})
	converged := time.Now()
	var p problems
	s.k.checkCluster(&p)
	w.checkLedger(&p)
	s.checkOnce(&p, c, lastID)
	s.k.checkReleasePhases(&p, lastID, phased)
	for _, msg := range p {
		t.Errorf("%s (%s): %s", c.at, c.flow, msg)
	}
	if t.Failed() {
		t.Logf("serve's log:\n%s", w.serveLog())
	}
	st, _ = w.status()
	if now := deref(envOf(st, "prod").Commit); now != s.prodHist[len(s.prodHist)-1] {
		s.prodHist = append(s.prodHist, now)
	}
	t.Logf("%-32s %-10s crashed after %5.1fs, converged %5.1fs later", c.at, c.flow,
		crashed.Sub(began).Seconds(), converged.Sub(crashed).Seconds())
}

// checkCluster checks that each environment's Deployment runs the image,
// pinned to the digest, and the commit and replicas status reports, and
// that the registry's and git's tags and the release branch agree with
// it.
func (k *kubeWorld) checkCluster(p *problems) {
	ctx := context.Background()
	st, ok := k.status()
	if !ok {
		p.add("status: the API does not answer")
		return
	}
	repo := k.reg + "/" + demo.AppName
	reg := registry.NewClient()
	digestOf := func(tag string) string {
		d, err := reg.Digest(ctx, repo, tag)
		if err != nil {
			p.add("registry tag %s: %v", tag, err)
			return ""
		}
		return d.String()
	}
	for _, name := range envs {
		e := envOf(st, name)
		if e.Commit == nil || e.Digest == nil || e.Image == nil {
			p.add("status: %s runs nothing", name)
			continue
		}
		commit, digest := *e.Commit, *e.Digest
		if !e.Healthy || e.Rollout != nil || e.Replicas.Ready != e.Replicas.Desired {
			p.add("status: %s healthy=%v rollout=%v replicas %d/%d", name, e.Healthy, e.Rollout, e.Replicas.Ready, e.Replicas.Desired)
		}
		ns := k.prefix + "-" + name
		d, err := k.cs.AppsV1().Deployments(ns).Get(ctx, demo.AppName, metav1.GetOptions{})
		if err != nil {
			p.add("cluster: the Deployment of %s: %v", name, err)
			continue
		}
		img := d.Spec.Template.Spec.Containers[0].Image
		if img != *e.Image || !strings.HasSuffix(img, "@"+digest) {
			p.add("cluster: %s's Deployment runs %s; status says %s, digest %s", name, img, *e.Image, digest)
		}
		if got := d.Spec.Template.Labels[kube.LabelCommit]; got != commit {
			p.add("cluster: %s's pods are labelled commit %s, status says %s", name, got, commit)
		}
		if int(*d.Spec.Replicas) != e.Replicas.Desired || int(d.Status.ReadyReplicas) != e.Replicas.Ready ||
			d.Status.UpdatedReplicas != *d.Spec.Replicas || d.Status.Replicas != *d.Spec.Replicas {
			p.add("cluster: %s's Deployment has %d/%d ready, %d updated, %d in all; status says %d/%d",
				name, d.Status.ReadyReplicas, *d.Spec.Replicas, d.Status.UpdatedReplicas, d.Status.Replicas, e.Replicas.Ready, e.Replicas.Desired)
		}
		if got := digestOf("sha-" + commit); got != digest {
			p.add("registry: sha-%s on %s, %s runs %s", commit[:7], got, name, digest)
		}
		if got := digestOf(pipeline.EnvTag(name)); got != digest {
			p.add("registry: %s on %s, %s runs %s", pipeline.EnvTag(name), got, name, digest)
		}
		if name != "prod" {
			continue
		}
		if got := digestOf(pipeline.LiveTag); got != digest {
			p.add("registry: live on %s, prod runs %s", got, digest)
		}
		if e.Release == nil {
			p.add("status: prod runs no release")
		} else {
			rc := *e.Release
			if got := digestOf(rc); got != digest {
				p.add("registry: %s on %s, prod runs %s", rc, got, digest)
			}
			if got := gitOut(k.ws.Bare, "rev-parse", rc+"^{commit}"); got != commit {
				p.add("git: tag %s on %s, want %s", rc, got, commit)
			}
		}
		if got := gitOut(k.ws.Bare, "rev-parse", "release"); got != commit {
			p.add("git: release at %s, prod runs %s", got, commit)
		}
	}
	tags, err := reg.Tags(ctx, repo)
	if err != nil {
		p.add("registry tags: %v", err)
		return
	}
	var regRC []string
	for _, t := range tags {
		if strings.HasPrefix(t, "RC") {
			regRC = append(regRC, t)
		}
	}
	gitRC := strings.Fields(gitOut(k.ws.Bare, "tag", "--list", "RC*"))
	slices.Sort(regRC)
	slices.Sort(gitRC)
	if !slices.Equal(regRC, gitRC) {
		p.add("release tags differ: registry %v, git %v", regRC, gitRC)
	}
}

// checkReleasePhases checks that each environment of phased ran the
// release command once in the flow, as one Job of the case's deployments
// (none repeated after the restart), and that the newest release phase
// recorded there succeeded, from the image it runs: nothing rolled out
// without it. Other environments run no new Job.
func (k *kubeWorld) checkReleasePhases(p *problems, after int64, phased []string) {
	ctx := context.Background()
	st, _ := k.status()
	store, err := ledger.Open(ctx, filepath.Join(k.ws.DataDir, ledger.FileName))
	if err != nil {
		p.add("open the ledger: %v", err)
		return
	}
	defer store.Close()
	for _, env := range envs {
		jobs, err := k.cs.BatchV1().Jobs(k.prefix+"-"+env).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelReleasePhase})
		if err != nil {
			p.add("cluster: list the Jobs of %s: %v", env, err)
			continue
		}
		var names []string
		for _, j := range jobs.Items {
			id, err := strconv.ParseInt(j.Labels[kube.LabelReleasePhase], 10, 64)
			if err != nil {
				p.add("cluster: Job %s of %s: release-phase label %q", j.Name, env, j.Labels[kube.LabelReleasePhase])
			}
			if id > after {
				names = append(names, fmt.Sprintf("%s (%s, %d succeeded, %d failed)", j.Name, j.Labels[kube.LabelCommit][:7], j.Status.Succeeded, j.Status.Failed))
			}
		}
		want := 0
		if slices.Contains(phased, env) {
			want = 1
		}
		if len(names) != want {
			p.add("cluster: %d release-phase Jobs on %s in this flow, want %d: %v", len(names), env, want, names)
		}
		if want == 0 {
			continue
		}
		var state, digest string
		err = store.DB().QueryRowContext(ctx, `SELECT r.state, r.digest FROM release_phases r JOIN deployments d ON d.id = r.deployment_id
			WHERE d.env = ? AND d.id > ? ORDER BY d.id DESC LIMIT 1`, env, after).Scan(&state, &digest)
		if err != nil {
			p.add("ledger: the release phase of %s: %v", env, err)
			continue
		}
		if e := envOf(st, env); state != ledger.StepSucceeded || e.Digest == nil || digest != *e.Digest {
			p.add("ledger: %s's last release phase %s from %s; it runs %s", env, state, digest, deref(e.Digest))
		}
	}
}
