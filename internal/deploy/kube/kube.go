// Package kube is the kubernetes runtime: each environment is a namespace
// holding a Deployment pinned to the image digest, a Service and what the
// configuration asks for (an Ingress or HTTPRoute, autoscaling, disruption
// budget, network policy, quota), applied with server-side apply under the field manager "slipway".
// A rollout is followed with a watch on the Deployment; one that exceeds its
// progress deadline is rolled back to the previous release by re-applying
// it.
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
)

// Backend deploys environments to a Kubernetes cluster.
type Backend struct {
	cs     kubernetes.Interface
	cfg    *config.Config
	log    *slog.Logger
	client map[string]restTarget
}

var (
	_ deploy.Backend   = (*Backend)(nil)
	_ deploy.LogSource = (*Backend)(nil)
)

// Options configure a Backend.
type Options struct {
	// Config gives each environment's namespace and kubernetes settings,
	// and the kubeconfig and context to use.
	Config *config.Config
	// Logger receives what the backend does; nil discards it.
	Logger *slog.Logger
}

// RESTConfig finds the cluster: the kubeconfig file and context of the
// configuration, else the KUBECONFIG rules (the KUBECONFIG variable, then
// ~/.kube/config), else the credentials of the pod slipway runs in.
func RESTConfig(k config.Kubernetes) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.Kubeconfig != "" {
		rules.ExplicitPath = k.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: k.Context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("find the Kubernetes cluster (set kubernetes.kubeconfig and kubernetes.context in slipway.yaml, or KUBECONFIG): %w", err)
	}
	return rc, nil
}

// New returns a backend for the cluster rc reaches.
func New(rc *rest.Config, o Options) (*Backend, error) {
	if o.Config == nil {
		return nil, errors.New("kubernetes runtime: no configuration")
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "slipway"
	}
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	watchAPIServer(rc, log)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	gw, err := gatewayClient(rc)
	if err != nil {
		return nil, err
	}
	b := &Backend{cs: cs, cfg: o.Config, log: log}
	b.client = map[string]restTarget{
		"Namespace":               {cs.CoreV1().RESTClient(), "namespaces", false},
		"ResourceQuota":           {cs.CoreV1().RESTClient(), "resourcequotas", true},
		"Service":                 {cs.CoreV1().RESTClient(), "services", true},
		"NetworkPolicy":           {cs.NetworkingV1().RESTClient(), "networkpolicies", true},
		"Deployment":              {cs.AppsV1().RESTClient(), "deployments", true},
		"HorizontalPodAutoscaler": {cs.AutoscalingV2().RESTClient(), "horizontalpodautoscalers", true},
		"PodDisruptionBudget":     {cs.PolicyV1().RESTClient(), "poddisruptionbudgets", true},
		"Ingress":                 {cs.NetworkingV1().RESTClient(), "ingresses", true},
		"HTTPRoute":               {gw, "httproutes", true},
	}
	return b, nil
}

type restTarget struct {
	c          rest.Interface
	resource   string
	namespaced bool
}

// Settings returns the settings of environment env.
func (b *Backend) Settings(env string) (Settings, error) {
	s, err := SettingsFor(b.cfg, env)
	if err != nil {
		return Settings{}, fmt.Errorf("%w: %w", deploy.ErrInvalidSpec, err)
	}
	return s, nil
}

// Apply brings the environment to spec: it applies the rendered objects
// and watches the Deployment until the rollout completes. A rollout that
// runs into its progress deadline is rolled back to the previous release,
// and a *deploy.RolloutError names the pods that failed and their events.
func (b *Backend) Apply(ctx context.Context, spec deploy.Spec) error {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return err
	}
	s, err := b.Settings(spec.Environment)
	if err != nil {
		return err
	}
	objs, err := Render(spec, s)
	if err != nil {
		return err
	}
	var (
		prev     *appsv1.Deployment
		prevSpec *deploy.Spec
	)
	err = whileUnreachable(ctx, func() (err error) {
		prev, prevSpec, err = b.current(ctx, s.Namespace, spec.App)
		return err
	})
	if err != nil {
		return err
	}
	if prev != nil && prevSpec != nil && onlyReplicas(*prevSpec, spec) {
		// A scale makes no new revision: the revision keeps the change
		// cause of the rollout that made it.
		if cause, ok := prev.Annotations[AnnotationChangeCause]; ok {
			for _, o := range objs {
				if o.Kind == "Deployment" {
					o.Body["metadata"].(map[string]any)["annotations"].(map[string]any)[AnnotationChangeCause] = cause
				}
			}
		}
	}
	dep, err := b.applyAll(ctx, objs, prev)
	if err != nil {
		return err
	}
	failure, err := b.waitRollout(ctx, dep)
	if err != nil {
		return fmt.Errorf("roll out %s to %s: %w", spec.Version, spec.Environment, err)
	}
	if failure == nil {
		b.log.Info("rolled out", "env", spec.Environment, "version", spec.Version, "namespace", s.Namespace)
		return nil
	}
	failure.Environment, failure.Version = spec.Environment, spec.Version
	if prevSpec == nil {
		// Nothing served before: remove what this rollout made.
		if err := b.Stop(context.WithoutCancel(ctx), spec.Environment); err != nil {
			failure.Reason += fmt.Sprintf("; removing the failed deployment also failed: %v", err)
		}
		return failure
	}
	back := *prevSpec
	back.Cause = fmt.Sprintf("automatic rollback to %s after %s failed: %s", back.Version, spec.Version, firstLine(failure.Reason))
	b.log.Warn("rollout failed, rolling back", "env", spec.Environment, "version", spec.Version, "to", back.Version, "reason", failure.Reason)
	if err := b.rollBack(context.WithoutCancel(ctx), back, s); err != nil {
		failure.Reason += fmt.Sprintf("; rolling back to %s also failed: %v", back.Version, err)
		return failure
	}
	failure.Reason += fmt.Sprintf("; %s (%s) applied again", back.Version, back.Image)
	return failure
}

func (b *Backend) rollBack(ctx context.Context, spec deploy.Spec, s Settings) error {
	objs, err := Render(spec, s)
	if err != nil {
		return err
	}
	prev, _, err := b.current(ctx, s.Namespace, spec.App)
	if err != nil {
		return err
	}
	dep, err := b.applyAll(ctx, objs, prev)
	if err != nil {
		return err
	}
	failure, err := b.waitRollout(ctx, dep)
	if err != nil {
		return err
	}
	if failure != nil {
		return errors.New(failure.Reason)
	}
	return nil
}

// current reads the environment's Deployment and the spec slipway last
// applied to it; both nil when there is none.
func (b *Backend) current(ctx context.Context, ns, name string) (*appsv1.Deployment, *deploy.Spec, error) {
	d, err := b.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read deployment %s/%s: %w", ns, name, err)
	}
	raw, ok := d.Annotations[AnnotationSpec]
	if !ok {
		return d, nil, nil
	}
	var spec deploy.Spec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return d, nil, fmt.Errorf("deployment %s/%s: annotation %s: %w", ns, name, AnnotationSpec, err)
	}
	return d, &spec, nil
}

// deployed returns the settings of env and the Deployment slipway applied
// there, with the spec it carries; an error wrapping deploy.ErrNotDeployed
// when there is none. Errors start with env.
func (b *Backend) deployed(ctx context.Context, env string) (Settings, *appsv1.Deployment, *deploy.Spec, error) {
	s, err := b.Settings(env)
	if err != nil {
		return Settings{}, nil, nil, fmt.Errorf("%s: %w", env, err)
	}
	d, applied, err := b.current(ctx, s.Namespace, b.cfg.App)
	if err != nil {
		return s, nil, nil, fmt.Errorf("%s: %w", env, err)
	}
	if d == nil {
		return s, nil, nil, fmt.Errorf("%s (no deployment %s in namespace %s): %w", env, b.cfg.App, s.Namespace, deploy.ErrNotDeployed)
	}
	return s, d, applied, nil
}

// applyAll applies objs in order, removes the optional objects prev had
// that objs no longer have, and returns the applied Deployment.
func (b *Backend) applyAll(ctx context.Context, objs []Object, prev *appsv1.Deployment) (*appsv1.Deployment, error) {
	var dep *appsv1.Deployment
	have := map[string]bool{}
	raws := make([][]byte, len(objs))
	if slices.ContainsFunc(objs, func(o Object) bool { return o.Kind == "HTTPRoute" }) {
		// Before anything is applied: a missing Gateway API is said once,
		// plainly.
		if err := b.checkGatewayAPI(ctx); err != nil {
			return nil, err
		}
	}
	if prev == nil {
		// The namespace first, then what lives in it, in order.
		for i, o := range objs {
			raw, err := b.apply(ctx, o)
			if err != nil {
				return nil, err
			}
			raws[i] = raw
		}
	} else {
		// The namespace exists: one round trip for all.
		errs := make([]error, len(objs))
		var wg sync.WaitGroup
		for i, o := range objs {
			wg.Go(func() { raws[i], errs[i] = b.apply(ctx, o) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	for i, o := range objs {
		have[o.Kind] = true
		if o.Kind == "Deployment" {
			dep = &appsv1.Deployment{}
			if err := json.Unmarshal(raws[i], dep); err != nil {
				return nil, fmt.Errorf("apply deployment %s/%s: decode answer: %w", o.Namespace, o.Name, err)
			}
		}
	}
	if prev != nil {
		for _, kind := range strings.Split(prev.Annotations[AnnotationObjects], ",") {
			if kind == "" || have[kind] {
				continue
			}
			t, ok := b.client[kind]
			if !ok {
				continue
			}
			err := t.c.Delete().Namespace(prev.Namespace).Resource(t.resource).Name(prev.Name).Do(ctx).Error()
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("remove %s %s/%s, no longer configured: %w", kind, prev.Namespace, prev.Name, err)
			}
		}
	}
	return dep, nil
}

// apply server-side applies one object and returns the answer's body.
func (b *Backend) apply(ctx context.Context, o Object) ([]byte, error) {
	t, ok := b.client[o.Kind]
	if !ok {
		return nil, fmt.Errorf("apply %s %s: kind unknown to slipway", o.Kind, o.Name)
	}
	body, err := json.Marshal(o.Body)
	if err != nil {
		return nil, fmt.Errorf("apply %s %s: %w", o.Kind, o.Name, err)
	}
	var (
		res rest.Result
		raw []byte
	)
	// An API server that does not answer is waited for: the apply is sent
	// again (it changes nothing the second time) once it answers.
	err = whileUnreachable(ctx, func() error {
		req := t.c.Patch(types.ApplyPatchType).Resource(t.resource).Name(o.Name).
			Param("fieldManager", FieldManager).Param("force", "true").Body(body)
		if t.namespaced {
			req = req.Namespace(o.Namespace)
		}
		res = req.Do(ctx)
		raw, err = res.Raw()
		return err
	})
	if err != nil {
		// Raw's error does not read the API server's Status (it says
		// "unknown"); Error's does: "… is forbidden: …".
		if serr := res.Error(); serr != nil {
			err = serr
		}
		if o.Kind == "HTTPRoute" && apierrors.IsNotFound(err) {
			// An apply creates what is missing: not found is the kind.
			err = fmt.Errorf("%w: %w", ErrNoGatewayAPI, err)
		}
		return nil, fmt.Errorf("apply %s %s/%s: %w", o.Kind, o.Namespace, o.Name, err)
	}
	return raw, nil
}

// onlyReplicas reports whether b differs from a in nothing but the replica
// count (and the cause).
func onlyReplicas(a, b deploy.Spec) bool {
	a.Replicas, a.Cause, b.Replicas, b.Cause = 0, "", 0, ""
	a.Frontend, b.Frontend = deploy.Frontend{}, deploy.Frontend{} // not the kubernetes runtime's
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
