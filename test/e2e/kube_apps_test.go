//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// Two apps served by one slipway on the test cluster, each from its own
// repository: birthday-app through dev → staging (from dev) → prod, and the
// same service as greeter through dev → prod. Pushes reach both; a release
// of one goes out while the other deploys; a release of one whose pods the
// cluster refuses is rolled back by itself while the other keeps running;
// status shows every app; each app's environments are namespaces of their
// own, and its images a repository of their own. As in TestKubernetesFlow,
// kwok runs no container: what runs is checked through the cluster.
func TestKubernetesApps(t *testing.T) {
	k := newKubeCluster(t)
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	start := time.Now()
	short, err := os.MkdirTemp("", "sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	e := &env{t: t}
	apiAddr := testenv.FreeAddr(t)
	e.apiURL = "http://" + apiAddr
	e.regAddr = testenv.FreeAddr(t)
	const appA, appB = demo.AppName, "greeter"
	ws := map[string]*env{}
	for _, app := range []string{appA, appB} {
		w, err := demo.Prepare(context.Background(), demo.Options{Dir: filepath.Join(short, app)})
		if err != nil {
			t.Fatal(err)
		}
		ws[app] = &env{t: t, ws: w}
	}
	// The two apps build at once. prod of birthday-app gives up on a
	// rollout that makes no progress for 6 s: pods refused below fail its
	// release quickly. greeter's code is birthday-app's, whose builds run
	// its tests: greeter's only vet it, to keep the test short.
	cfgPath := filepath.Join(short, "slipway.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`runtime: kubernetes
kubernetes:
  kubeconfig: %s
  namespace: "%s-{{.App}}-{{.Environment}}"
build: {concurrency: 2}
apps:
  - app: %s
    repo: {url: %s}
    environments:
      - name: dev
      - name: staging
        from: dev
        replicas: 1
      - name: prod
        replicas: 3
        rollout: {readyTimeout: 6s}
  - app: %s
    repo: {url: %s}
    test: {command: go vet ./...}
`, k.kubeconfig, k.prefix, appA, ws[appA].ws.Bare, appB, ws[appB].ws.Bare))
	ns := func(app, env string) string { return k.prefix + "-" + app + "-" + env }
	envsOf := map[string][]string{appA: {"dev", "staging", "prod"}, appB: {"dev", "prod"}}

	dataDir := filepath.Join(short, "data")
	e.bin = buildSlipway(t, short)
	e.args = []string{"serve", "--config", cfgPath, "--data-dir", dataDir, "--api-addr", apiAddr, "--registry-addr", e.regAddr}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
	t.Logf("%s: slipway built", time.Since(start).Round(100*time.Millisecond))
	e.startServe()
	tok, err := os.ReadFile(filepath.Join(dataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TOKEN", strings.TrimSpace(string(tok)))
	client := api.NewClient(e.apiURL, strings.TrimSpace(string(tok)))

	// settled reports whether env of app runs commit, healthy, with no
	// rollout in flight.
	settled := func(app, env, commit string) bool {
		s := envOf(e.appStatus(app), env)
		return s.Commit != nil && *s.Commit == commit && s.Healthy && s.Rollout == nil
	}
	onCluster := func(app, env, commit string) {
		t.Helper()
		k.checkDeployment(ns(app, env), app, envOf(e.appStatus(app), env), commit)
	}
	step := func(what string) { t.Logf("%s: %s", time.Since(start).Round(100*time.Millisecond), what) }

	// Each app's first commit goes along its chain to prod: birthday-app's
	// release branch waits until staging has verified it.
	c0 := map[string]string{}
	for _, app := range []string{appA, appB} {
		c0[app] = git(t, ws[app].ws.Bare, "rev-parse", "master")
	}
	for _, app := range []string{appA, appB} {
		e.waitFor(app+": c0 on prod", func() bool { return settled(app, "prod", c0[app]) })
		for _, env := range envsOf[app] {
			onCluster(app, env, c0[app])
		}
	}
	rc0 := *envOf(e.appStatus(appA), "prod").Release
	step("both apps' first commit on prod")

	// A push to birthday-app reaches dev, then staging with the same image.
	a1 := ws[appA].push("Say hi", func(dir string) {
		editFile(t, filepath.Join(dir, "main.go"), "// Command birthday-app", "// Command birthday-app says hi.\n// Command birthday-app")
	})
	e.waitFor("a1 verified on staging", func() bool { return settled(appA, "staging", a1) })
	stA := e.appStatus(appA)
	if dev, stg := envOf(stA, "dev"), envOf(stA, "staging"); deref(dev.Digest) != deref(stg.Digest) || deref(stg.Commit) != a1 {
		t.Errorf("staging runs %s at %s, dev %s at %s: want a1 %s, the same digest", deref(stg.Commit), deref(stg.Digest), deref(dev.Commit), deref(dev.Digest), a1[:7])
	}
	onCluster(appA, "staging", a1)
	step("a1 verified on birthday-app's staging")

	// A push to greeter; while its dev takes it, birthday-app releases a1.
	b1 := ws[appB].push("Greet", func(dir string) {
		writeFile(t, filepath.Join(dir, "zz_greeter.go"), "package main\n\n// greeter is birthday-app under another name.\n")
	})
	e.waitFor("b1 in flight on greeter's dev", func() bool {
		r := envOf(e.appStatus(appB), "dev").Rollout
		return r != nil && r.Commit == b1
	})
	out, errOut, code := e.slipway("release", "--app", appA)
	if code != 0 {
		t.Fatalf("release of birthday-app: exit %d\n%s%s", code, out, errOut)
	}
	if r := envOf(e.appStatus(appB), "dev").Rollout; r != nil {
		step("birthday-app released a1 while greeter's dev was at step " + r.Step + " of b1")
	} else {
		step("birthday-app released a1; greeter's dev had finished b1 meanwhile")
	}
	rc1 := *envOf(e.appStatus(appA), "prod").Release
	if rc1 == rc0 || !strings.Contains(out, rc1+" ("+a1[:7]+") is live on prod") {
		t.Errorf("release printed %q (release before: %s)", out, rc0)
	}
	onCluster(appA, "prod", a1)
	if got := git(t, ws[appA].ws.Bare, "rev-parse", rc1+"^{commit}"); got != a1 {
		t.Errorf("git: tag %s on %s, want %s", rc1, got, a1)
	}
	e.waitFor("b1 verified on greeter's dev", func() bool { return settled(appB, "dev", b1) })
	onCluster(appB, "dev", b1)
	onCluster(appB, "prod", c0[appB])
	step("b1 verified on greeter's dev")

	// The cluster refuses the pods of a2 in birthday-app's prod (as an
	// image policy would): a2 passes dev and staging, and its release is
	// rolled back by itself, while greeter's prod serves on, untouched.
	a2 := ws[appA].push("Refused on prod", func(dir string) {
		writeFile(t, filepath.Join(dir, "zz_refused.go"), "package main\n\n// Pods of this commit are refused on prod.\n")
	})
	refusePods(t, k, ns(appA, "prod"), a2)
	e.waitFor("a2 verified on staging", func() bool { return settled(appA, "staging", a2) })
	onCluster(appA, "staging", a2)
	step("a2 verified on birthday-app's staging")
	watch := watchServing(t, k, client, appB, ns(appB, "prod"), c0[appB])
	out, errOut, code = e.slipway("release", "--app", appA)
	watch.finish()
	if code != 1 || !strings.Contains(out, "rolled-back") || !strings.Contains(out, "rolled back to "+rc1) {
		t.Errorf("release of a2: exit %d, %q %q; want it rolled back to %s", code, out, errOut, rc1)
	}
	if p := envOf(e.appStatus(appA), "prod"); deref(p.Commit) != a1 || deref(p.Release) != rc1 || !p.Healthy || p.LastFailure == nil || !strings.Contains(*p.LastFailure, a2[:7]) {
		t.Errorf("birthday-app's prod after the refused release: %s %s healthy=%v, last failure %s; want a1 %s, healthy, the failure of a2", deref(p.Commit), deref(p.Release), p.Healthy, deref(p.LastFailure), rc1)
	}
	onCluster(appA, "prod", a1)
	if got := git(t, ws[appA].ws.Bare, "rev-parse", "release"); got != a1 {
		t.Errorf("git: birthday-app's release at %s after the rollback, want a1 %s", got, a1)
	}
	step("a2's release rolled back")

	// greeter releases b1 as usual.
	out, errOut, code = e.slipway("release", "--app", appB)
	if code != 0 {
		t.Fatalf("release of greeter: exit %d\n%s%s", code, out, errOut)
	}
	onCluster(appB, "prod", b1)
	step("greeter released b1")

	// Status of every app, in the configuration's order.
	out, errOut, code = e.slipway("status", "-o", "json")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	var all api.AppsStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	want := map[string]map[string]string{
		appA: {"dev": a2, "staging": a2, "prod": a1},
		appB: {"dev": b1, "prod": b1},
	}
	var got []string
	for _, st := range all.Apps {
		for _, s := range st.Environments {
			got = append(got, st.App+"/"+s.Name+"="+deref(s.Commit)+healthWord(s.Healthy))
		}
	}
	var wantRows []string
	for _, app := range []string{appA, appB} {
		for _, env := range envsOf[app] {
			wantRows = append(wantRows, app+"/"+env+"="+want[app][env]+healthWord(true))
		}
	}
	if diff := cmp.Diff(wantRows, got); diff != "" {
		t.Errorf("status of every app (-want +got):\n%s", diff)
	}
	out, errOut, code = e.slipway("status")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("slipway status:\n%s", out)
	for _, app := range []string{appA, appB} {
		for _, env := range envsOf[app] {
			if !hasRow(out, app, env, want[app][env][:7]) {
				t.Errorf("slipway status has no row of %s %s at %s", app, env, want[app][env][:7])
			}
		}
	}

	// Each app's environments are namespaces of their own, each holding
	// that app's Deployment only, and each app's images a repository of
	// their own, tagged for its environments.
	nss, err := k.cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var gotNS, wantNS []string
	for _, n := range nss.Items {
		if strings.HasPrefix(n.Name, k.prefix+"-") {
			gotNS = append(gotNS, n.Name)
		}
	}
	reg := registry.NewClient()
	for _, app := range []string{appA, appB} {
		st := e.appStatus(app)
		repo := e.regAddr + "/" + app
		for _, env := range envsOf[app] {
			wantNS = append(wantNS, ns(app, env))
			deps, err := k.cs.AppsV1().Deployments(ns(app, env)).List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, d := range deps.Items {
				names = append(names, d.Name+" of "+d.Labels[kube.LabelName])
			}
			if diff := cmp.Diff([]string{app + " of " + app}, names); diff != "" {
				t.Errorf("Deployments in %s (-want +got):\n%s", ns(app, env), diff)
			}
			s := envOf(st, env)
			tags := []string{s.Tag, "sha-" + want[app][env]}
			if env == "prod" {
				tags = append(tags, "live", deref(s.Release))
			}
			for _, tag := range tags {
				if d, err := reg.Digest(context.Background(), repo, tag); err != nil || d.String() != deref(s.Digest) {
					t.Errorf("registry: %s:%s on %v (%v), want %s's %s digest %s", repo, tag, d, err, app, env, deref(s.Digest))
				}
			}
		}
		other := map[string]string{appA: b1, appB: a1}[app]
		if d, err := reg.Digest(context.Background(), repo, "sha-"+other); err == nil {
			t.Errorf("registry: %s has sha-%s (%s), a commit of the other app", repo, other[:7], d)
		}
	}
	slices.Sort(gotNS)
	slices.Sort(wantNS)
	if diff := cmp.Diff(wantNS, gotNS); diff != "" {
		t.Errorf("the test's namespaces (-want +got):\n%s", diff)
	}
	step("status, namespaces and registries checked")

	// serve killed and started again takes up both apps where they were:
	// nothing is deployed again, and a push to greeter goes on as before.
	newest := func(app string) []int64 {
		h, err := client.History(context.Background(), app, "", 2)
		if err != nil {
			t.Fatalf("history of %s: %v", app, err)
		}
		var ids []int64
		for _, d := range h.Deployments {
			ids = append(ids, d.ID)
		}
		return ids
	}
	generations := func() map[string]int64 {
		gens := map[string]int64{}
		for _, app := range []string{appA, appB} {
			for _, env := range envsOf[app] {
				d, err := k.cs.AppsV1().Deployments(ns(app, env)).Get(context.Background(), app, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				gens[app+"/"+env] = d.Generation
			}
		}
		return gens
	}
	beforeA, beforeB, gens := newest(appA), newest(appB), generations()
	e.kill()
	e.startServe()
	b2 := ws[appB].push("Greet again", func(dir string) {
		writeFile(t, filepath.Join(dir, "zz_greeter.go"), "package main\n\n// greeter is birthday-app under another name, again.\n")
	})
	e.waitFor("b2 verified on greeter's dev after the restart", func() bool { return settled(appB, "dev", b2) })
	onCluster(appB, "dev", b2)
	if got := newest(appA); !cmp.Equal(beforeA, got) {
		t.Errorf("birthday-app's newest deployments after the restart: %v, want %v as before", got, beforeA)
	}
	if got := newest(appB); len(got) != 2 || got[1] != beforeB[0] {
		t.Errorf("greeter's newest deployments after the restart: %v, want b2's deploy after %d", got, beforeB[0])
	}
	gens["greeter/dev"]++
	if diff := cmp.Diff(gens, generations()); diff != "" {
		t.Errorf("Deployments' generations after the restart (-want +got):\n%s", diff)
	}
	for _, app := range []string{appA, appB} {
		for _, env := range envsOf[app] {
			if w := map[string]string{appB + "/dev": b2}[app+"/"+env]; w == "" && !settled(app, env, want[app][env]) {
				t.Errorf("%s %s after the restart: %+v, want %s, healthy", app, env, envOf(e.appStatus(app), env), want[app][env][:7])
			}
		}
	}
	step("serve restarted; b2 verified on greeter's dev")

	if hist, ok := k.kubectl("-n", ns(appA, "prod"), "rollout", "history", "deployment/"+appA); ok {
		t.Logf("kubectl rollout history of birthday-app's prod:\n%s", hist)
		// The rollback brings a1's pod template back, so the cluster moves
		// its revision up and keeps the newest cause.
		for _, w := range []string{"(commit " + a2[:12] + ") to prod: release", rc1 + " (commit " + a1[:12] + ") to prod: automatic rollback to " + rc1} {
			if !strings.Contains(hist, w) {
				t.Errorf("kubectl rollout history lacks %q", w)
			}
		}
	}
	step("done")
}

func healthWord(ok bool) string {
	if ok {
		return " healthy"
	}
	return " unhealthy"
}

// hasRow reports whether a line of the text status names app, env and
// commit.
func hasRow(out, app, env, commit string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == app && f[1] == env && strings.Contains(line, commit) {
			return true
		}
	}
	return false
}

// editFile replaces the first old in path with new; the test fails when
// path lacks old.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	writeFile(t, path, strings.Replace(string(b), old, new, 1))
}

// refusePods makes the cluster refuse pods of commit in namespace ns, with
// a ValidatingAdmissionPolicy, and waits until it does.
func refusePods(t *testing.T, k *kubeCluster, ns, commit string) {
	t.Helper()
	ctx := context.Background()
	name := ns + "-refuse"
	pols := k.cs.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	_, err := pols.Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptrTo(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: fmt.Sprintf("!has(object.metadata.labels) || object.metadata.labels[?%q].orValue('') != %q", kube.LabelCommit, commit),
				Message:    "commit " + commit[:7] + " is refused here",
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the admission policy: %v", err)
	}
	t.Cleanup(func() { pols.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	binds := k.cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
	_, err = binds.Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: ns},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the admission policy binding: %v", err)
	}
	t.Cleanup(func() { binds.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	// The API server takes the policy up within a second or two: a pod of
	// commit, created in a dry run, is refused then.
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Labels: map[string]string{kube.LabelCommit: commit}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	end := time.Now().Add(time.Minute)
	for {
		_, err := k.cs.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("a pod of %s in %s is still admitted a minute after the policy refusing it (last: %v)", commit[:7], ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ptrTo[T any](v T) *T { return &v }

// serving watches that an app's environment keeps its commit on every
// replica, as the cluster and status say, until finish.
type serving struct {
	t       *testing.T
	stop    chan struct{}
	wg      sync.WaitGroup
	samples int
	bad     []string
}

func watchServing(t *testing.T, k *kubeCluster, c *api.Client, app, ns, commit string) *serving {
	s := &serving{t: t, stop: make(chan struct{})}
	env := strings.TrimPrefix(ns, k.prefix+"-"+app+"-")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			ctx := context.Background()
			var problem string
			d, err := k.cs.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
			switch {
			case err != nil:
				problem = err.Error()
			case d.Spec.Template.Labels[kube.LabelCommit] != commit || d.Status.AvailableReplicas != *d.Spec.Replicas || d.Status.UpdatedReplicas != *d.Spec.Replicas:
				problem = fmt.Sprintf("Deployment at %s, %d/%d available", d.Spec.Template.Labels[kube.LabelCommit], d.Status.AvailableReplicas, *d.Spec.Replicas)
			}
			if problem == "" {
				st, err := c.Status(ctx, app)
				if p := envOf(st, env); err != nil || deref(p.Commit) != commit || !p.Healthy || p.Rollout != nil {
					problem = fmt.Sprintf("status: %s healthy=%v rollout=%v (%v)", deref(p.Commit), p.Healthy, p.Rollout, err)
				}
			}
			s.samples++
			if problem != "" {
				s.bad = append(s.bad, problem)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *serving) finish() {
	s.t.Helper()
	close(s.stop)
	s.wg.Wait()
	s.t.Logf("the other app's prod, looked at %d times meanwhile: %d times not as before", s.samples, len(s.bad))
	if len(s.bad) > 0 || s.samples == 0 {
		s.t.Errorf("the other app's prod changed meanwhile, %d of %d times; first: %v", len(s.bad), s.samples, s.bad)
	}
}
