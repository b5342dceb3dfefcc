package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
)

// Status reports the environment as the cluster has it: the Deployment's
// image, replicas and rollout, its pods, and any drift from what slipway
// applied (an image or replica count changed by hand).
func (b *Backend) Status(ctx context.Context, env string) (deploy.Status, error) {
	s, d, applied, err := b.deployed(ctx, env)
	if err != nil {
		return deploy.Status{}, err
	}
	pods, err := b.cs.CoreV1().Pods(s.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(),
	})
	if err != nil {
		return deploy.Status{}, fmt.Errorf("status of %s: list pods in %s: %w", env, s.Namespace, err)
	}
	st := statusOf(env, s, d, applied, pods.Items)
	if s.URL == "" {
		url, err := b.trafficURL(ctx, d, pods.Items)
		if err != nil {
			return deploy.Status{}, fmt.Errorf("status of %s: %w", env, err)
		}
		if url != "" {
			st.URL = url
		}
	}
	return st, nil
}

func statusOf(env string, s Settings, d *appsv1.Deployment, applied *deploy.Spec, pods []corev1.Pod) deploy.Status {
	image := ""
	if len(d.Spec.Template.Spec.Containers) > 0 {
		image = d.Spec.Template.Spec.Containers[0].Image
	}
	tl := d.Spec.Template.Labels
	st := deploy.Status{
		Environment: env,
		Image:       image,
		Digest:      digestOf(image),
		Commit:      tl[LabelCommit],
		Version:     tl[LabelVersion],
		URL:         s.URL,
		Isolation:   deploy.IsolationContainer,
		Since:       d.CreationTimestamp.Time,
	}
	if st.URL == "" {
		st.URL = serviceURL(d.Name, d.Namespace)
	}
	desired := int32(1)
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	st.Replicas = deploy.Replicas{Desired: int(desired), Ready: int(d.Status.ReadyReplicas), Updated: int(d.Status.UpdatedReplicas)}
	done, failed := rolloutState(d)
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "NewReplicaSetAvailable" {
			st.Since = c.LastTransitionTime.Time
		}
	}
	var msgs []string
	if applied != nil {
		st.Version = applied.Version
		if applied.Image != image {
			msgs = append(msgs, fmt.Sprintf("drift: the Deployment runs image %s, but slipway applied %s (%s, commit %s); changed outside slipway, the next deploy puts it back", image, applied.Image, applied.Version, applied.Commit))
			st.Commit, st.Version = "", ""
		}
		if !s.Kube.Autoscaling.Enabled() && applied.Replicas != int(desired) {
			msgs = append(msgs, fmt.Sprintf("drift: the Deployment wants %d replicas, but slipway applied %d; changed outside slipway", desired, applied.Replicas))
		}
	} else {
		msgs = append(msgs, fmt.Sprintf("drift: deployment %s/%s has no %s annotation: it was not applied by slipway", d.Namespace, d.Name, AnnotationSpec))
	}
	switch {
	case failed:
		msgs = append(msgs, "rollout failed: progress deadline exceeded")
	case !done:
		msgs = append(msgs, fmt.Sprintf("rollout in progress: %d of %d replicas updated, %d available", d.Status.UpdatedReplicas, desired, d.Status.AvailableReplicas))
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		r := deploy.Replica{
			Name:    p.Name,
			Version: p.Labels[LabelVersion],
			Commit:  p.Labels[LabelCommit],
			Ready:   podReady(&p),
			Address: p.Status.PodIP,
			Since:   p.CreationTimestamp.Time,
		}
		if p.Status.StartTime != nil {
			r.Since = p.Status.StartTime.Time
		}
		for _, cs := range p.Status.ContainerStatuses {
			r.Restarts += int(cs.RestartCount)
			if cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
				r.State = "crash-looping"
			}
		}
		switch {
		case r.State != "":
		case r.Ready:
			r.State = "ready"
		case p.Status.Phase == corev1.PodPending:
			r.State = "starting"
		default:
			r.State = "unready"
		}
		if !r.Ready {
			r.Message = podState(&p)
		}
		st.Instances = append(st.Instances, r)
	}
	if applied != nil && applied.Replicas == 0 && desired == 0 {
		st.Stopped = true
		msgs = append(msgs, fmt.Sprintf("stopped: scaled to 0; slipway start %s starts it", env))
	}
	st.Healthy = done && !st.Stopped && len(msgs) == 0
	st.Message = strings.Join(msgs, "; ")
	return st
}

func serviceURL(name, ns string) string {
	return fmt.Sprintf("http://%s.%s.svc.cluster.local", name, ns)
}

// URL is where environment env of cfg is reached, as far as the
// configuration says: its url, else the host of its Ingress or HTTPRoute,
// else its Service's cluster DNS name (reachable from inside the cluster).
// Status adds what only the cluster knows: a load balancer's address, a
// node port.
func URL(cfg *config.Config, env string) (string, error) {
	s, err := SettingsFor(cfg, env)
	if err != nil {
		return "", err
	}
	if s.URL != "" {
		return s.URL, nil
	}
	if u := configuredURL(s.Kube); u != "" {
		return u, nil
	}
	return serviceURL(cfg.App, s.Namespace), nil
}

func digestOf(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		return image[i+1:]
	}
	return ""
}

// Stop deletes what slipway applied to the environment (Deployment,
// Service and the optional objects); the namespace, its Secrets and
// anything else in it stay.
func (b *Backend) Stop(ctx context.Context, env string) error {
	s, d, _, err := b.deployed(ctx, env)
	if err != nil {
		return fmt.Errorf("stop %w", err)
	}
	if d.Labels[LabelManagedBy] != managedBy {
		return fmt.Errorf("stop %s: deployment %s/%s is not managed by slipway (label %s); delete it yourself", env, d.Namespace, d.Name, LabelManagedBy)
	}
	bg := metav1.DeletePropagationBackground
	for _, kind := range []string{"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "HTTPRoute", "Service", "NetworkPolicy", "ResourceQuota"} {
		t := b.client[kind]
		err := t.c.Delete().Namespace(s.Namespace).Resource(t.resource).Name(d.Name).
			Body(&metav1.DeleteOptions{PropagationPolicy: &bg}).Do(ctx).Error()
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("stop %s: delete %s %s/%s: %w", env, kind, s.Namespace, d.Name, err)
		}
	}
	b.log.Info("stopped", "env", env, "namespace", s.Namespace)
	return nil
}

// Logs writes the output of the environment's pods, each line prefixed by
// "[pod] ". With follow it keeps streaming until ctx ends, and takes up the
// pods that start later (a rollout's new ones, a scale-up, a restarted
// container) as they start.
func (b *Backend) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	s, d, _, err := b.deployed(ctx, env)
	if err != nil {
		return fmt.Errorf("logs of %w", err)
	}
	selector := labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()
	pods, err := b.cs.CoreV1().Pods(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("logs of %s: list pods: %w", env, err)
	}
	out := &prefixWriter{w: w}
	if !follow {
		errs := make([]error, len(pods.Items))
		var wg sync.WaitGroup
		for i := range pods.Items {
			wg.Go(func() { errs[i] = b.podLogs(ctx, &pods.Items[i], false, out) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	streaming := map[string]bool{} // pod UID and restart count → streamed
	take := func(p *corev1.Pod) {
		restarts, started := containerStarted(p)
		key := fmt.Sprintf("%s/%d", p.UID, restarts)
		if !started || streaming[key] {
			return
		}
		streaming[key] = true
		wg.Go(func() {
			if err := b.podLogs(ctx, p, true, out); err != nil && ctx.Err() == nil {
				out.line(p.Name, []byte("slipway: "+err.Error()))
			}
		})
	}
	for i := range pods.Items {
		take(&pods.Items[i])
	}
	rv := pods.ResourceVersion
	for ctx.Err() == nil {
		if rv == "" {
			// The watch could not go on from where it was: list again.
			if pods, err = b.cs.CoreV1().Pods(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector}); err != nil {
				if ctx.Err() != nil {
					break
				}
				return fmt.Errorf("logs of %s: list pods: %w", env, err)
			}
			for i := range pods.Items {
				take(&pods.Items[i])
			}
			rv = pods.ResourceVersion
		}
		wi, err := b.cs.CoreV1().Pods(s.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("logs of %s: watch pods: %w", env, err)
		}
		for ev := range wi.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			switch {
			case ev.Type == watch.Error:
				rv = ""
			case ok && (ev.Type == watch.Added || ev.Type == watch.Modified):
				rv = p.ResourceVersion
				take(p)
			case ok:
				rv = p.ResourceVersion
			}
			if rv == "" {
				break
			}
		}
		wi.Stop()
	}
	return nil
}

// containerStarted reports whether the app's container of p has started
// (its output can be read), and how often it restarted.
func containerStarted(p *corev1.Pod) (restarts int32, started bool) {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == container {
			return c.RestartCount, c.State.Running != nil || c.State.Terminated != nil
		}
	}
	return 0, false
}

// podLogs copies the output of p's app container to out.
func (b *Backend) podLogs(ctx context.Context, p *corev1.Pod, follow bool, out *prefixWriter) error {
	rc, err := b.cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, Follow: follow}).Stream(ctx)
	if err != nil {
		return fmt.Errorf("logs of pod %s: %w", p.Name, err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if err := out.line(p.Name, sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs of pod %s: %w", p.Name, err)
	}
	return nil
}

// prefixWriter writes whole lines from several pods, each prefixed by its
// pod's name.
type prefixWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixWriter) line(pod string, text []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := fmt.Fprintf(p.w, "[%s] %s\n", pod, text)
	return err
}

// History is the Deployment's rollout history, oldest first: each
// ReplicaSet's revision, image and change cause, as `kubectl rollout
// history` shows them.
func (b *Backend) History(ctx context.Context, env string) ([]Revision, error) {
	s, d, _, err := b.deployed(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("history of %w", err)
	}
	rss, err := b.cs.AppsV1().ReplicaSets(s.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", env, err)
	}
	var out []Revision
	for _, rs := range rss.Items {
		var r Revision
		if _, err := fmt.Sscan(rs.Annotations["deployment.kubernetes.io/revision"], &r.Number); err != nil {
			continue
		}
		r.Cause = rs.Annotations[AnnotationChangeCause]
		if len(rs.Spec.Template.Spec.Containers) > 0 {
			r.Image = rs.Spec.Template.Spec.Containers[0].Image
		}
		r.Created = rs.CreationTimestamp.Time
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Revision) int { return a.Number - b.Number })
	return out, nil
}

// Revision is one entry of a Deployment's rollout history.
type Revision struct {
	Number  int       `json:"revision"`
	Image   string    `json:"image"`
	Cause   string    `json:"cause"`
	Created time.Time `json:"created"`
}
