package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// The release phase on this machine: the environment's supervisor runs
// the release command once, from the new image's unpacked files, as it
// runs replicas (the same sandbox, user, cgroup limits, data directory,
// variables and secrets), and answers once it has ended, with its output.
// Nothing of what the environment serves changes.

var _ deploy.ReleaseRunner = (*Backend)(nil)

// releaseRequest is the body of a supervisor's POST /release.
type releaseRequest struct {
	Spec    deploy.Spec       `json:"spec"`
	Image   imageFiles        `json:"image"`
	Secrets map[string]string `json:"secrets,omitempty"`
	Job     deploy.ReleaseJob `json:"job"`
}

// releaseResult is its answer: the command's output (its last
// deploy.MaxReleaseOutput bytes), and how it failed ("" when it exited 0).
type releaseResult struct {
	Output string `json:"output"`
	Failed string `json:"failed,omitempty"`
}

// releaseGrace is how long a release command has between SIGTERM and
// SIGKILL once its time is up.
const releaseGrace = 10 * time.Second

// RunRelease runs job from spec's image in spec's environment: see
// deploy.ReleaseRunner. It starts the environment's supervisor if none
// runs; one started for a release that failed, and that serves nothing,
// is stopped again.
func (b *Backend) RunRelease(ctx context.Context, spec deploy.Spec, job deploy.ReleaseJob, out io.Writer) error {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return err
	}
	if len(job.Command) == 0 || job.Command[0] == "" {
		return fmt.Errorf("release phase of %s: %w: no command to run", spec.Environment, deploy.ErrInvalidSpec)
	}
	if job.Timeout <= 0 {
		job.Timeout = 10 * time.Minute
	}
	defer b.lock(spec.Environment)()
	dir := b.envDir(ctx, spec.Environment)
	fail := func(err error) error {
		return &deploy.ReleaseError{Environment: spec.Environment, Reason: "could not start: " + err.Error()}
	}
	secrets, err := readSecrets(spec)
	if err != nil {
		return fail(err)
	}
	img, err := b.images.unpack(ctx, spec.Image)
	if err != nil {
		return fail(err)
	}
	ctl, err := b.supervisor(ctx, dir, spec)
	if err != nil {
		return fail(err)
	}
	if spec, err = b.resolve(ctx, ctl, dir, spec); err != nil {
		return fail(err)
	}
	// The supervisor keeps time; this bounds a supervisor that does not.
	wait, cancel := context.WithTimeout(ctx, job.Timeout+releaseGrace+30*time.Second)
	defer cancel()
	var res releaseResult
	err = ctl.do(wait, "POST", "/release", releaseRequest{Spec: spec, Image: img, Secrets: secrets, Job: job}, &res)
	if res.Output != "" {
		io.WriteString(out, res.Output)
	}
	if err == nil && res.Failed == "" {
		return nil
	}
	if ctx.Err() == nil {
		ctx := context.WithoutCancel(ctx)
		if serr := ctl.do(ctx, "GET", "/spec", nil, nil); errors.Is(serr, deploy.ErrNotDeployed) {
			ctl.do(ctx, "POST", "/stop", nil, nil)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, errUnknownRequest) {
			return &deploy.ReleaseError{Environment: spec.Environment, Reason: fmt.Sprintf(
				"could not run: the supervisor of %s was started by an older slipway, which has no release phase; "+
					"it keeps serving the running version. To run the phase, stop that supervisor (kill the pid in %s) and release again: "+
					"the release starts one of this slipway, and %s answers nothing until the new replicas are ready. Or remove release.command for %s",
				spec.Environment, filepath.Join(dir, "supervisor.pid"), spec.Environment, spec.Environment)}
		}
		return &deploy.ReleaseError{Environment: spec.Environment, Reason: "could not run: " + err.Error()}
	}
	return &deploy.ReleaseError{Environment: spec.Environment, Reason: res.Failed}
}

// handleRelease serves POST /release: it runs the release command and
// answers once it has ended. The command is stopped if the caller goes
// away, as its controller would run it again.
func (s *supervisor) handleRelease(w http.ResponseWriter, r *http.Request) {
	var req releaseRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, controlError{Error: "decode release request: " + err.Error()})
		return
	}
	if done, ok := s.releaseDone(req); ok {
		s.logger.Info("release phase had succeeded already", "run", req.Job.ID, "version", req.Spec.Version)
		writeJSON(w, http.StatusOK, releaseResult{Output: done.Output + fmt.Sprintf(
			"\n(run %s of this command from this image had succeeded already, at %s: its output is above; it was not run again)\n",
			req.Job.ID, done.Finished.UTC().Format(time.RFC3339))})
		return
	}
	out := &deploy.TailBuffer{}
	err := s.runRelease(r.Context(), req, out)
	res := releaseResult{Output: out.String()}
	if err != nil {
		res.Failed = err.Error()
	} else {
		s.recordRelease(req, res.Output)
	}
	writeJSON(w, http.StatusOK, res)
}

// releaseRun is the record of a release command that succeeded, kept in
// the environment's directory: a controller stopped before it recorded
// the end asks again under the same run number, and is answered from it
// rather than running the command a second time.
type releaseRun struct {
	Image    string    `json:"image"`
	Command  []string  `json:"command"`
	Output   string    `json:"output"`
	Finished time.Time `json:"finished"`
}

// keptReleaseRuns is how many records of release runs an environment keeps.
const keptReleaseRuns = 20

// releaseRunPath is where the record of req's run is kept; "" for a run
// number that cannot name a file.
func (s *supervisor) releaseRunPath(req releaseRequest) string {
	id := req.Job.ID
	if id == "" || len(id) > 64 || strings.IndexFunc(id, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_')
	}) >= 0 {
		return ""
	}
	return filepath.Join(s.dir, "release-runs", id+".json")
}

// releaseDone returns the record of req's run when it succeeded, from
// the same image with the same command.
func (s *supervisor) releaseDone(req releaseRequest) (releaseRun, bool) {
	path := s.releaseRunPath(req)
	if path == "" {
		return releaseRun{}, false
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return releaseRun{}, false
	}
	var run releaseRun
	if json.Unmarshal(raw, &run) != nil || run.Image != req.Spec.Image || !slices.Equal(run.Command, req.Job.Command) {
		return releaseRun{}, false
	}
	return run, true
}

// recordRelease records that req's run succeeded with output, and drops
// the oldest records beyond keptReleaseRuns. A record that cannot be
// written only means the run would be run again.
func (s *supervisor) recordRelease(req releaseRequest, output string) {
	path := s.releaseRunPath(req)
	if path == "" {
		return
	}
	raw, err := json.Marshal(releaseRun{Image: req.Spec.Image, Command: req.Job.Command, Output: output, Finished: time.Now()})
	if err == nil {
		err = writeFileAtomic(path, raw)
	}
	if err != nil {
		s.logger.Warn("release phase: could not record its success", "run", req.Job.ID, "err", err)
		return
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) <= keptReleaseRuns {
		return
	}
	type rec struct {
		name string
		mod  time.Time
	}
	var recs []rec
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".json") {
			recs = append(recs, rec{e.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(recs, func(a, b rec) int { return b.mod.Compare(a.mod) })
	for _, r := range recs[min(len(recs), keptReleaseRuns):] {
		os.Remove(filepath.Join(filepath.Dir(path), r.name))
	}
}

// runRelease runs req's command as a one-off replica of req's spec that
// takes no traffic: its own name, the replicas' sandbox and limits, no
// PORT.
func (s *supervisor) runRelease(ctx context.Context, req releaseRequest, out io.Writer) error {
	spec := req.Spec
	s.logger.Info("release phase", "version", spec.Version, "command", req.Job.Command, "timeout", req.Job.Timeout)
	r := &replica{
		name: fmt.Sprintf("%s-release-%s", spec.Environment, req.Job.ID),
		rev:  newRevision(spec, req.Image, req.Secrets),
		argv: req.Job.Command,
	}
	cmd, err := s.command(r, out)
	if err != nil {
		return fmt.Errorf("could not start: %w", err)
	}
	defer s.finished(r)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("could not start: %w", err)
	}
	explain, err := s.started(r, cmd)
	if err != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		return fmt.Errorf("could not start: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timer := time.NewTimer(req.Job.Timeout)
	defer timer.Stop()
	select {
	case err = <-exited:
		err = explain(err)
	case <-timer.C:
		stopGroup(cmd, exited)
		return fmt.Errorf("ran out of its %s timeout, and was stopped", req.Job.Timeout)
	case <-ctx.Done():
		stopGroup(cmd, exited)
		return errors.New("stopped: slipway stopped waiting for it")
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		s.logger.Info("release phase succeeded", "version", spec.Version)
		return nil
	case errors.As(err, &ee) && ee.Exited():
		err = fmt.Errorf("exited with status %d", ee.ExitCode())
	case errors.As(err, &ee):
		err = fmt.Errorf("ended by %v", ee.ProcessState)
	}
	s.logger.Warn("release phase failed", "version", spec.Version, "err", err)
	return err
}

// stopGroup sends SIGTERM to cmd's process group, SIGKILL after
// releaseGrace, and waits for it.
func stopGroup(cmd *exec.Cmd, exited <-chan error) {
	pid := cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
		syscall.Kill(-pid, syscall.SIGKILL)
	case <-time.After(releaseGrace):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
}

// writeFileAtomic writes data to path through a temporary file renamed
// over it, so that a reader never sees half of it; path's directory is
// made if needed.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
