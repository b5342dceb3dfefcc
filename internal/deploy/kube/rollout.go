package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"slipway.dev/slipway/internal/deploy"
)

// errDeadline ends the watch of a rollout that ran into its progress
// deadline.
var errDeadline = errors.New("progress deadline exceeded")

// rolloutState says where a Deployment's rollout is: done, failed (its
// progress deadline passed) or still going.
func rolloutState(d *appsv1.Deployment) (done, failed bool) {
	if d.Status.ObservedGeneration < d.Generation {
		return false, false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return false, true
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want, false
}

// rolloutProgress describes where a Deployment's rollout stands, for
// deploy.ReportProgress: "1 of 3 replicas updated, 1 available; 2 old".
func rolloutProgress(d *appsv1.Deployment) string {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	msg := fmt.Sprintf("%d of %d replicas updated, %d available", s.UpdatedReplicas, want, s.AvailableReplicas)
	if old := s.Replicas - s.UpdatedReplicas; old > 0 {
		msg += fmt.Sprintf("; %d old", old)
	}
	return msg
}

// waitRollout watches the Deployment (from the version apply returned)
// until its rollout completes (nil, nil) or runs into its progress deadline
// (a RolloutError naming the pods and their events).
func (b *Backend) waitRollout(ctx context.Context, d *appsv1.Deployment) (*deploy.RolloutError, error) {
	done, failed := rolloutState(d)
	if !done && !failed {
		// A bound for a cluster whose deployment controller does not
		// answer; the progress deadline ends a stuck rollout long before.
		limit := 5 * time.Minute
		if d.Spec.ProgressDeadlineSeconds != nil {
			limit += 2 * time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second
		}
		wctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		deps := b.cs.AppsV1().Deployments(d.Namespace)
		lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", d.Name).String()
			return deps.Watch(ctx, o)
		}}
		last := rolloutProgress(d)
		deploy.ReportProgress(ctx, last)
		ev, err := watchtools.Until(wctx, d.ResourceVersion, lw, func(ev watch.Event) (bool, error) {
			switch ev.Type {
			case watch.Deleted:
				return false, fmt.Errorf("deployment %s/%s was deleted during the rollout", d.Namespace, d.Name)
			case watch.Error:
				return false, fmt.Errorf("watch deployment %s/%s: %v", d.Namespace, d.Name, ev.Object)
			}
			cur, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				return false, nil
			}
			if msg := rolloutProgress(cur); msg != last {
				last = msg
				deploy.ReportProgress(ctx, msg)
			}
			done, failed := rolloutState(cur)
			if failed {
				return true, errDeadline
			}
			return done, nil
		})
		switch {
		case errors.Is(err, errDeadline):
			d = ev.Object.(*appsv1.Deployment)
			failed = true
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return nil, fmt.Errorf("deployment %s/%s made no visible progress for %s: is the cluster's deployment controller running?", d.Namespace, d.Name, limit)
		case err != nil:
			return nil, fmt.Errorf("watch deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
	}
	if !failed {
		return nil, nil
	}
	return b.explain(context.WithoutCancel(ctx), d), nil
}

// explain builds the RolloutError of a Deployment whose progress deadline
// passed: the new ReplicaSet's pods that are not ready, their state and
// their events, and the first one's last log lines when the cluster has
// them.
func (b *Backend) explain(ctx context.Context, d *appsv1.Deployment) *deploy.RolloutError {
	deadline := time.Duration(0)
	if d.Spec.ProgressDeadlineSeconds != nil {
		deadline = time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second
	}
	re := &deploy.RolloutError{Reason: fmt.Sprintf("no progress within the deadline of %s", deadline)}
	pods, err := b.newPods(ctx, d)
	if err != nil {
		re.Reason += fmt.Sprintf(" (its pods could not be read: %v)", err)
		return re
	}
	var lines []string
	for _, p := range pods {
		if podReady(&p) {
			continue
		}
		if len(lines) == maxPodsNamed {
			lines = append(lines, "and more pods of the new version, not ready either")
			break
		}
		line := fmt.Sprintf("pod %s: %s", p.Name, podState(&p))
		if evs := b.podEvents(ctx, &p); len(evs) > 0 {
			line += "; events: " + strings.Join(evs, "; ")
		}
		lines = append(lines, line)
		if re.Replica == "" {
			re.Replica = p.Name
			re.LastLogs = b.lastLogs(ctx, &p, 20)
		}
	}
	if len(lines) == 0 {
		lines = append(lines, "no pod of the new version exists (quota, admission or scheduling?)")
	}
	re.Reason += ":\n  " + strings.Join(lines, "\n  ")
	return re
}

// maxPodsNamed bounds the pods a RolloutError describes.
const maxPodsNamed = 5

// newPods are the pods of the Deployment's newest ReplicaSet.
func (b *Backend) newPods(ctx context.Context, d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()
	rss, err := b.cs.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	rev := d.Annotations["deployment.kubernetes.io/revision"]
	hash := ""
	for _, rs := range rss.Items {
		if rs.Annotations["deployment.kubernetes.io/revision"] == rev {
			hash = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		}
	}
	if hash != "" {
		sel += "," + appsv1.DefaultDeploymentUniqueLabelKey + "=" + hash
	}
	pods, err := b.cs.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	items := pods.Items
	slices.SortFunc(items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return items, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState says why a pod is not ready: the waiting or terminated
// container's reason, restarts, or the Ready condition's message.
func podState(p *corev1.Pod) string {
	parts := []string{string(p.Status.Phase)}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			parts = append(parts, fmt.Sprintf("%s %s: %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated: %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		}
		if cs.RestartCount > 0 {
			parts = append(parts, fmt.Sprintf("%d restarts", cs.RestartCount))
		}
	}
	for _, c := range p.Status.Conditions {
		if (c.Type == corev1.PodReady || c.Type == corev1.PodScheduled) && c.Status != corev1.ConditionTrue {
			msg := c.Reason
			if c.Message != "" {
				msg += " (" + c.Message + ")"
			}
			parts = append(parts, fmt.Sprintf("not %s: %s", strings.ToLower(string(c.Type)), msg))
		}
	}
	return strings.Join(parts, ", ")
}

// podEvents are the pod's events, oldest first: "Type Reason: message".
func (b *Backend) podEvents(ctx context.Context, p *corev1.Pod) []string {
	evs, err := b.cs.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": p.Name}.String(),
	})
	if err != nil {
		return []string{fmt.Sprintf("(events could not be read: %v)", err)}
	}
	items := evs.Items
	slices.SortFunc(items, func(a, b corev1.Event) int { return a.LastTimestamp.Compare(b.LastTimestamp.Time) })
	var out []string
	for _, e := range items {
		s := fmt.Sprintf("%s %s: %s", e.Type, e.Reason, strings.TrimSpace(e.Message))
		if e.Count > 1 {
			s += fmt.Sprintf(" (x%d)", e.Count)
		}
		out = append(out, s)
	}
	return out
}

// lastLogs are the pod's last n log lines, or none when the cluster cannot
// give them (a container that never started, a simulated node).
func (b *Backend) lastLogs(ctx context.Context, p *corev1.Pod, n int64) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc, err := b.cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, TailLines: &n}).Stream(ctx)
	if err != nil {
		return nil
	}
	defer rc.Close()
	var lines []string
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}
