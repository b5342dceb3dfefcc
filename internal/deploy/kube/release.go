package kube

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/deploy"
)

// The release phase on Kubernetes is a Job in the environment's namespace:
// one pod of the new image, with the environment's variables, secrets and
// resources, that runs the release command once (no retries). slipway
// waits for it to end and copies its pod's output. Nothing routes to it.

var _ deploy.ReleaseRunner = (*Backend)(nil)

const (
	// LabelReleasePhase is on the Job of a release phase and its pod: the
	// run's id (the deployment's number).
	LabelReleasePhase = "slipway.dev/release-phase"
	releaseContainer  = "release"
	// releaseJobTTL is how long a finished Job (and its pod's logs) stays
	// in the namespace.
	releaseJobTTL = 24 * time.Hour
	// releasePoll is how often a running Job is looked at.
	releasePoll = 250 * time.Millisecond
)

// ReleaseJobName is the name of the Job of release run id of app.
func ReleaseJobName(app, id string) string {
	n := app + "-release-" + id
	if len(n) > 63 {
		n = n[:63]
	}
	return n
}

// RunRelease runs job as a Job of spec's environment: see
// deploy.ReleaseRunner. A Job of the same run that slipway left running
// (it restarted meanwhile) is waited for rather than started twice; one
// that failed is replaced.
func (b *Backend) RunRelease(ctx context.Context, spec deploy.Spec, job deploy.ReleaseJob, out io.Writer) error {
	spec = spec.WithDefaults()
	spec.Frontend = deploy.Frontend{}
	if err := spec.Validate(); err != nil {
		return err
	}
	if len(job.Command) == 0 || job.Command[0] == "" {
		return fmt.Errorf("release phase of %s: %w: no command to run", spec.Environment, deploy.ErrInvalidSpec)
	}
	if job.Timeout <= 0 {
		job.Timeout = 10 * time.Minute
	}
	s, err := b.Settings(spec.Environment)
	if err != nil {
		return err
	}
	objs, err := Render(spec, s)
	if err != nil {
		return err
	}
	fail := func(format string, args ...any) error {
		return &deploy.ReleaseError{Environment: spec.Environment, Reason: fmt.Sprintf(format, args...)}
	}
	for _, o := range objs {
		if o.Kind == "Namespace" {
			if _, err := b.apply(ctx, o); err != nil {
				return fail("could not start: %v", err)
			}
		}
	}
	want, err := releaseJob(spec, s, job)
	if err != nil {
		return err
	}
	jobs := b.cs.BatchV1().Jobs(s.Namespace)
	var j *batchv1.Job
	err = whileUnreachable(ctx, func() (err error) {
		j, err = jobs.Create(ctx, want, metav1.CreateOptions{FieldManager: FieldManager})
		return err
	})
	if apierrors.IsAlreadyExists(err) {
		j, err = b.takeUpJob(ctx, want)
	}
	if err != nil {
		return fail("could not start: create Job %s/%s: %v", want.Namespace, want.Name, err)
	}
	crashpoint.Hit("release.job")
	deploy.ReportProgress(ctx, fmt.Sprintf("Job %s/%s started", j.Namespace, j.Name))
	wait, cancel := context.WithTimeout(ctx, job.Timeout+time.Minute)
	defer cancel()
	j, err = b.waitJob(wait, j)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail("did not end: %v", err)
	}
	pod := b.copyJobLogs(ctx, j, out)
	if jobSucceeded(j) {
		return nil
	}
	return fail("%s", jobFailure(j, pod, job.Timeout))
}

// releaseJob is the Job of job: the pod of spec's Deployment, with the
// release command instead of the image's, no port, no probes, never
// restarted, and labels that no Service or Deployment selects.
func releaseJob(spec deploy.Spec, s Settings, job deploy.ReleaseJob) (*batchv1.Job, error) {
	labels := map[string]string{
		LabelName:         spec.App,
		LabelManagedBy:    managedBy,
		LabelEnvironment:  spec.Environment,
		LabelVersion:      labelValue(spec.Version),
		LabelCommit:       spec.Commit,
		LabelReleasePhase: labelValue(job.ID),
	}
	d, err := deployment(spec, s, metav1.ObjectMeta{Labels: labels}, labels, labels)
	if err != nil {
		return nil, err
	}
	pod := d.Spec.Template
	pod.Labels = labels
	c := &pod.Spec.Containers[0]
	c.Name = releaseContainer
	c.Command, c.Args = slices.Clone(job.Command), nil
	c.Ports, c.ReadinessProbe, c.LivenessProbe = nil, nil, nil
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "PORT" })
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ReleaseJobName(spec.App, job.ID), Namespace: s.Namespace, Labels: labels,
			Annotations: map[string]string{AnnotationChangeCause: "release phase of " + changeCause(spec)},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			ActiveDeadlineSeconds:   ptr(int64(max(1, (job.Timeout+time.Second-1)/time.Second))),
			TTLSecondsAfterFinished: ptr(int32(releaseJobTTL / time.Second)),
			Template:                pod,
		},
	}, nil
}

// takeUpJob returns the Job of want's name that exists already: itself
// when it runs or succeeded (of the same image), else a new one after it
// is deleted.
func (b *Backend) takeUpJob(ctx context.Context, want *batchv1.Job) (*batchv1.Job, error) {
	jobs := b.cs.BatchV1().Jobs(want.Namespace)
	j, err := jobs.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sameImage := len(j.Spec.Template.Spec.Containers) > 0 && j.Spec.Template.Spec.Containers[0].Image == want.Spec.Template.Spec.Containers[0].Image
	if sameImage && !jobFailed(j) {
		return j, nil
	}
	bg := metav1.DeletePropagationBackground
	if err := jobs.Delete(ctx, want.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	for {
		j, err := jobs.Create(ctx, want, metav1.CreateOptions{FieldManager: FieldManager})
		if !apierrors.IsAlreadyExists(err) {
			return j, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(releasePoll):
		}
	}
}

// waitJob waits until j has succeeded or failed, and returns it then.
func (b *Backend) waitJob(ctx context.Context, j *batchv1.Job) (*batchv1.Job, error) {
	jobs := b.cs.BatchV1().Jobs(j.Namespace)
	for !jobSucceeded(j) && !jobFailed(j) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(releasePoll):
		}
		name := j.Name
		err := whileUnreachable(ctx, func() (err error) {
			j, err = jobs.Get(ctx, name, metav1.GetOptions{})
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return j, nil
}

func jobSucceeded(j *batchv1.Job) bool {
	return j.Status.Succeeded > 0 || jobCondition(j, batchv1.JobComplete) != nil
}

func jobFailed(j *batchv1.Job) bool {
	return j.Status.Failed > 0 || jobCondition(j, batchv1.JobFailed) != nil
}

func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// jobFailure says how j failed: its container's exit status, or the
// Job's condition.
func jobFailure(j *batchv1.Job, pod *corev1.Pod, timeout time.Duration) string {
	if c := jobCondition(j, batchv1.JobFailed); c != nil && c.Reason == batchv1.JobReasonDeadlineExceeded {
		return fmt.Sprintf("ran out of its %s timeout, and was stopped (Job %s/%s)", timeout, j.Namespace, j.Name)
	}
	if pod != nil {
		for _, cs := range pod.Status.ContainerStatuses {
			if t := cs.State.Terminated; cs.Name == releaseContainer && t != nil {
				msg := fmt.Sprintf("exited with status %d", t.ExitCode)
				if t.Reason != "" && t.Reason != "Error" {
					msg += " (" + t.Reason + ")"
				}
				return msg + fmt.Sprintf(" (Job %s/%s)", j.Namespace, j.Name)
			}
		}
	}
	if c := jobCondition(j, batchv1.JobFailed); c != nil {
		return fmt.Sprintf("failed: %s: %s (Job %s/%s)", c.Reason, c.Message, j.Namespace, j.Name)
	}
	return fmt.Sprintf("failed (Job %s/%s)", j.Namespace, j.Name)
}

// copyJobLogs writes the output of j's pod to out, and returns the pod
// (nil when none is found).
func (b *Backend) copyJobLogs(ctx context.Context, j *batchv1.Job, out io.Writer) *corev1.Pod {
	pods, err := b.cs.CoreV1().Pods(j.Namespace).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + j.Name})
	if err != nil || len(pods.Items) == 0 {
		fmt.Fprintf(out, "[no output: the pod of Job %s/%s could not be found: %v]\n", j.Namespace, j.Name, err)
		return nil
	}
	p := &pods.Items[len(pods.Items)-1]
	rc, err := b.cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: releaseContainer}).Stream(ctx)
	if err != nil {
		fmt.Fprintf(out, "[no output: the logs of pod %s: %v]\n", p.Name, err)
		return p
	}
	defer rc.Close()
	io.Copy(out, rc)
	return p
}
