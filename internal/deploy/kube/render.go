package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
)

// Labels and annotations slipway puts on what it applies.
const (
	LabelName        = "app.kubernetes.io/name"
	LabelInstance    = "app.kubernetes.io/instance"
	LabelVersion     = "app.kubernetes.io/version"
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	LabelEnvironment = "slipway.dev/environment"
	LabelCommit      = "slipway.dev/commit"

	// AnnotationChangeCause is what `kubectl rollout history` shows.
	AnnotationChangeCause = "kubernetes.io/change-cause"
	// AnnotationSpec holds the deploy.Spec slipway applied, as JSON: the
	// previous release for an automatic rollback, and the reference for
	// drift.
	AnnotationSpec = "slipway.dev/spec"
	// AnnotationObjects lists the optional kinds applied with the
	// Deployment, so that ones no longer configured are removed.
	AnnotationObjects = "slipway.dev/objects"

	// FieldManager is the server-side apply field manager.
	FieldManager = "slipway"
	managedBy    = "slipway"
	container    = "app"
	portName     = "http"
)

// Settings are the kubernetes runtime's settings for one environment.
type Settings struct {
	Namespace string
	// ProgressDeadline bounds the Deployment's progressDeadlineSeconds
	// together with the spec's ready timeout: the shorter wins.
	ProgressDeadline time.Duration
	// URL is where users reach the environment; empty: the Service's
	// cluster DNS name.
	URL  string
	Kube config.EnvKubernetes
}

// SettingsFor returns the settings of environment env in cfg; an
// environment cfg does not name gets the defaults of that name.
func SettingsFor(cfg *config.Config, env string) (Settings, error) {
	e, ok := cfg.Environment(env)
	if !ok {
		e = config.DefaultEnvironment(env)
		e.URL = "-"
	}
	ns := e.Kubernetes.Namespace
	if ns == "" {
		tmpl := cfg.Kubernetes.Namespace
		if tmpl == "" {
			tmpl = config.Default().Kubernetes.Namespace
		}
		t, err := template.New("namespace").Option("missingkey=error").Parse(tmpl)
		if err != nil {
			return Settings{}, fmt.Errorf("kubernetes.namespace %q: %w", tmpl, err)
		}
		var b strings.Builder
		if err := t.Execute(&b, struct{ App, Environment string }{cfg.App, env}); err != nil {
			return Settings{}, fmt.Errorf("kubernetes.namespace %q: %w", tmpl, err)
		}
		ns = strings.ToLower(b.String())
	}
	if errs := validNamespace(ns); errs != "" {
		return Settings{}, fmt.Errorf("namespace %q of environment %s: %s; set kubernetes.namespace", ns, env, errs)
	}
	s := Settings{Namespace: ns, ProgressDeadline: cfg.Kubernetes.ProgressDeadline, Kube: e.Kubernetes}
	if e.URL != "-" && e.URL != "" {
		s.URL = e.URL
	}
	return s, nil
}

func validNamespace(ns string) string {
	if len(ns) == 0 || len(ns) > 63 {
		return "a namespace has 1-63 characters"
	}
	for i, r := range ns {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(ns)-1
		if !ok {
			return "use lower-case letters, digits and dashes, starting and ending with a letter or digit"
		}
	}
	return ""
}

// Object is one Kubernetes object slipway applies, as the JSON body of its
// server-side apply.
type Object struct {
	Kind      string
	Name      string
	Namespace string
	Body      map[string]any
}

// Render returns the objects Apply applies for spec, in the order it
// applies them: Namespace, ResourceQuota, NetworkPolicy, Service, Ingress
// or HTTPRoute, Deployment, HorizontalPodAutoscaler, PodDisruptionBudget
// (each optional one only when configured).
func Render(spec deploy.Spec, s Settings) ([]Object, error) {
	spec = spec.WithDefaults()
	// The local runtime's load balancer has nothing to do here: neither
	// rendered nor recorded.
	spec.Frontend = deploy.Frontend{}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := checkSecrets(spec); err != nil {
		return nil, err
	}
	ns, k := s.Namespace, s.Kube
	name := spec.App
	common := map[string]string{
		LabelName:        spec.App,
		LabelInstance:    spec.App + "-" + spec.Environment,
		LabelManagedBy:   managedBy,
		LabelEnvironment: spec.Environment,
	}
	selector := map[string]string{LabelInstance: common[LabelInstance]}
	podLabels := maps.Clone(common)
	podLabels[LabelVersion] = labelValue(spec.Version)
	podLabels[LabelCommit] = spec.Commit
	meta := func(name string, labels map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}

	var optional []string
	var out []any
	out = append(out, &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: common},
	})
	if k.Quota.Enabled() {
		hard := corev1.ResourceList{}
		if k.Quota.CPU != "" {
			q, err := quantity("quota.cpu", k.Quota.CPU)
			if err != nil {
				return nil, err
			}
			if k.Resources.Requests.CPU == "" {
				return nil, fmt.Errorf("%w: kubernetes.quota.cpu admits only pods that request CPU: set kubernetes.resources.requests.cpu too", deploy.ErrInvalidSpec)
			}
			hard[corev1.ResourceRequestsCPU] = q
		}
		if k.Quota.Memory != "" {
			q, err := quantity("quota.memory", k.Quota.Memory)
			if err != nil {
				return nil, err
			}
			if k.Resources.Requests.Memory == "" {
				return nil, fmt.Errorf("%w: kubernetes.quota.memory admits only pods that request memory: set kubernetes.resources.requests.memory too", deploy.ErrInvalidSpec)
			}
			hard[corev1.ResourceRequestsMemory] = q
		}
		if k.Quota.Pods > 0 {
			hard[corev1.ResourcePods] = *resource.NewQuantity(int64(k.Quota.Pods), resource.DecimalSI)
		}
		optional = append(optional, "ResourceQuota")
		out = append(out, &corev1.ResourceQuota{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
			ObjectMeta: meta(name, common),
			Spec:       corev1.ResourceQuotaSpec{Hard: hard},
		})
	}
	if k.NetworkPolicy.InternalOnly {
		optional = append(optional, "NetworkPolicy")
		out = append(out, &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: meta(name, common),
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: selector},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				// Pods of any namespace of the cluster; nothing from outside.
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
				}},
			},
		})
	}
	out = append(out, service(meta(name, common), selector, k.Service))
	switch {
	case k.Ingress.Enabled():
		optional = append(optional, "Ingress")
		out = append(out, ingress(meta(name, common), name, k.Ingress))
	case k.HTTPRoute.Enabled():
		optional = append(optional, "HTTPRoute")
		out = append(out, httpRoute(meta(name, common), name, k.HTTPRoute))
	}

	dep, err := deployment(spec, s, meta(name, common), selector, podLabels)
	if err != nil {
		return nil, err
	}
	// A stopped environment (no replicas) has no autoscaler: it would
	// want at least one replica.
	autoscaled := k.Autoscaling.Enabled() && spec.Replicas > 0
	if autoscaled {
		optional = append(optional, "HorizontalPodAutoscaler")
	}
	if k.PodDisruptionBudget.Enabled() {
		optional = append(optional, "PodDisruptionBudget")
	}
	dep.Annotations[AnnotationObjects] = strings.Join(optional, ",")
	out = append(out, dep)

	if a := k.Autoscaling; autoscaled {
		minR := int32(a.MinReplicas)
		if minR == 0 {
			minR = int32(min(spec.Replicas, a.MaxReplicas))
		}
		target := int32(a.TargetCPUPercent)
		if target == 0 {
			target = 80
		}
		out = append(out, &autoscalingv2.HorizontalPodAutoscaler{
			TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
			ObjectMeta: meta(name, common),
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
				MinReplicas:    &minR,
				MaxReplicas:    int32(a.MaxReplicas),
				Metrics: []autoscalingv2.MetricSpec{{
					Type: autoscalingv2.ResourceMetricSourceType,
					Resource: &autoscalingv2.ResourceMetricSource{
						Name:   corev1.ResourceCPU,
						Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &target},
					},
				}},
			},
		})
	}
	if p := k.PodDisruptionBudget; p.Enabled() {
		pdb := &policyv1.PodDisruptionBudget{
			TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
			ObjectMeta: meta(name, common),
			Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: selector}},
		}
		if p.MinAvailable != "" {
			v := intstr.Parse(p.MinAvailable)
			pdb.Spec.MinAvailable = &v
		} else {
			v := intstr.Parse(p.MaxUnavailable)
			pdb.Spec.MaxUnavailable = &v
		}
		out = append(out, pdb)
	}

	objs := make([]Object, 0, len(out))
	for _, o := range out {
		m, err := toMap(o)
		if err != nil {
			return nil, err
		}
		md := m["metadata"].(map[string]any)
		ons, _ := md["namespace"].(string)
		objs = append(objs, Object{Kind: m["kind"].(string), Name: md["name"].(string), Namespace: ons, Body: m})
	}
	return objs, nil
}

func deployment(spec deploy.Spec, s Settings, meta metav1.ObjectMeta, selector, podLabels map[string]string) (*appsv1.Deployment, error) {
	k := s.Kube
	port := int32(spec.Port)
	if port == 0 {
		port = 8080
	}
	env := []corev1.EnvVar{{Name: "PORT", Value: strconv.Itoa(int(port))}}
	for _, key := range slices.Sorted(maps.Keys(spec.Env)) {
		if key == "PORT" {
			continue
		}
		env = append(env, corev1.EnvVar{Name: key, Value: spec.Env[key]})
	}
	for _, se := range k.SecretEnv {
		env = append(env, corev1.EnvVar{Name: se.Name, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: se.Secret}, Key: se.Key},
		}})
	}
	var res corev1.ResourceRequirements
	for _, q := range []struct {
		field string
		list  *corev1.ResourceList
		vals  config.ResourceList
	}{{"resources.requests", &res.Requests, k.Resources.Requests}, {"resources.limits", &res.Limits, k.Resources.Limits}} {
		if q.vals.CPU == "" && q.vals.Memory == "" {
			continue
		}
		*q.list = corev1.ResourceList{}
		if q.vals.CPU != "" {
			v, err := quantity(q.field+".cpu", q.vals.CPU)
			if err != nil {
				return nil, err
			}
			(*q.list)[corev1.ResourceCPU] = v
		}
		if q.vals.Memory != "" {
			v, err := quantity(q.field+".memory", q.vals.Memory)
			if err != nil {
				return nil, err
			}
			(*q.list)[corev1.ResourceMemory] = v
		}
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(portName)}},
			PeriodSeconds:    2,
			FailureThreshold: 3,
		}
	}
	c := corev1.Container{
		Name:           container,
		Image:          spec.Image,
		Ports:          []corev1.ContainerPort{{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP}},
		Env:            env,
		Resources:      res,
		ReadinessProbe: probe(spec.ReadinessPath),
	}
	if spec.LivenessPath != "" {
		c.LivenessProbe = probe(spec.LivenessPath)
		c.LivenessProbe.PeriodSeconds = 10
	}
	var pull []corev1.LocalObjectReference
	for _, n := range k.ImagePullSecrets {
		pull = append(pull, corev1.LocalObjectReference{Name: n})
	}
	// The rollout fails at whichever comes first: a new replica not ready
	// within the ready timeout, or the cluster-wide progress deadline.
	deadline := spec.Strategy.ReadyTimeout
	if deadline <= 0 || s.ProgressDeadline > 0 && s.ProgressDeadline < deadline {
		deadline = s.ProgressDeadline
	}
	grace := int64(spec.Strategy.TerminationGracePeriod.Round(time.Second) / time.Second)
	surge, unavailable := intstr.FromInt32(int32(spec.Strategy.MaxSurge)), intstr.FromInt32(int32(spec.Strategy.MaxUnavailable))

	recorded := spec
	recorded.Cause = ""
	specJSON, err := json.Marshal(recorded)
	if err != nil {
		return nil, fmt.Errorf("record spec: %w", err)
	}
	meta.Labels = maps.Clone(meta.Labels)
	meta.Labels[LabelVersion] = podLabels[LabelVersion]
	meta.Labels[LabelCommit] = spec.Commit
	meta.Annotations = map[string]string{
		AnnotationChangeCause: changeCause(spec),
		AnnotationSpec:        string(specJSON),
	}
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable},
			},
			ProgressDeadlineSeconds: ptr(int32(max(1, (deadline+time.Second-1)/time.Second))),
			RevisionHistoryLimit:    ptr(int32(10)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: spec.Annotations},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{c},
					ImagePullSecrets:              pull,
					TerminationGracePeriodSeconds: &grace,
				},
			},
		},
	}
	if !k.Autoscaling.Enabled() || spec.Replicas == 0 {
		// Stopped: scaled to 0 even when an autoscaler runs it otherwise.
		d.Spec.Replicas = ptr(int32(spec.Replicas))
	}
	return d, nil
}

// changeCause says what slipway did and why, for `kubectl rollout history`.
func changeCause(spec deploy.Spec) string {
	c := fmt.Sprintf("slipway: %s %s (commit %s) to %s", spec.App, spec.Version, spec.Commit[:12], spec.Environment)
	if spec.Cause != "" {
		c += ": " + spec.Cause
	}
	return c
}

// checkSecrets refuses a spec that would write a database password into
// the Deployment.
func checkSecrets(spec deploy.Spec) error {
	for k, v := range spec.Env {
		u, err := url.Parse(v)
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			return fmt.Errorf("%w: env %s holds a password, which the Deployment would show to anyone who can read it: put it in a Secret and name it under environments[].kubernetes.secretEnv", deploy.ErrInvalidSpec, k)
		}
	}
	return nil
}

func quantity(field, v string) (resource.Quantity, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return q, fmt.Errorf("%w: kubernetes.%s %q is not a quantity: use e.g. 250m or 128Mi", deploy.ErrInvalidSpec, field, v)
	}
	return q, nil
}

// labelValue makes v a valid label value (63 characters of [A-Za-z0-9-_.]).
func labelValue(v string) string {
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return strings.Trim(string(b[:min(len(b), 63)]), "-_.")
}

func ptr[T any](v T) *T { return &v }

// toMap turns a typed object into its apply body, without the fields a
// typed struct always writes but an apply must not claim.
func toMap(o any) (map[string]any, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode object: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("encode object: %w", err)
	}
	prune(m)
	// Status is the cluster's to write; an empty spec says nothing.
	delete(m, "status")
	if spec, ok := m["spec"].(map[string]any); ok && len(spec) == 0 {
		delete(m, "spec")
	}
	return m, nil
}

// prune removes nulls (creationTimestamp: null) and the empty status and
// resources objects recursively; other empty objects keep their meaning
// (namespaceSelector: {} is every namespace).
func prune(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			prune(v)
			if len(v) == 0 && (k == "status" || k == "resources") {
				delete(m, k)
			}
		case []any:
			for _, e := range v {
				if em, ok := e.(map[string]any); ok {
					prune(em)
				}
			}
		}
	}
}

// WriteYAML writes objects as a YAML stream, one document each.
func WriteYAML(w io.Writer, objs []Object) error {
	var b bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			b.WriteString("---\n")
		}
		data, err := yaml.Marshal(o.Body)
		if err != nil {
			return fmt.Errorf("render %s %s: %w", o.Kind, o.Name, err)
		}
		b.Write(data)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteJSON writes objects as a v1 List.
func WriteJSON(w io.Writer, objs []Object) error {
	items := make([]map[string]any, 0, len(objs))
	for _, o := range objs {
		items = append(items, o.Body)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}
