package deploy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ReleaseJob is an environment's release phase, to run once before a
// rollout: Command, from the new image's own files, with the spec's Env
// and Secrets (DATABASE_URL among them), within Timeout.
type ReleaseJob struct {
	// ID tells one run from another (the deployment's number): a runtime
	// names what it makes for the run after it.
	ID string
	// Command is the program and its arguments, as the image's files have
	// them (no shell unless the command names one).
	Command []string
	// Timeout stops the command: SIGTERM, then SIGKILL.
	Timeout time.Duration
}

// ReleaseRunner is a backend that runs release phases.
type ReleaseRunner interface {
	// RunRelease runs job.Command once from spec's image, as spec's
	// environment runs its replicas (variables, secrets, data, sandbox),
	// writes its output to out, and returns once it has ended: nil when
	// it exited 0, a *ReleaseError when it failed, ran out of time or could
	// not start. It changes nothing of what the environment serves.
	RunRelease(ctx context.Context, spec Spec, job ReleaseJob, out io.Writer) error
}

// ReleaseError is a release phase that did not succeed.
type ReleaseError struct {
	Environment string
	// Reason says how it ended: "exited with status 3", "ran out of its
	// 10m0s timeout", "could not start: …".
	Reason string
}

func (e *ReleaseError) Error() string {
	return fmt.Sprintf("release command on %s %s", e.Environment, e.Reason)
}

// MaxReleaseOutput is how much of a release command's output is kept: its
// last bytes.
const MaxReleaseOutput = 64 << 10

// TailBuffer keeps the last Max bytes written to it (all of them when Max
// is 0: MaxReleaseOutput), and counts what it dropped. It is safe for
// concurrent use.
type TailBuffer struct {
	Max int

	mu      sync.Mutex
	buf     []byte
	dropped int64
}

var _ io.Writer = (*TailBuffer)(nil)

// Write keeps p's tail.
func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	max := t.Max
	if max <= 0 {
		max = MaxReleaseOutput
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - max; over > 0 {
		t.dropped += int64(over)
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String is what was kept, led by a line saying how much was cut before
// it.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if t.dropped > 0 {
		// Start at a line: a cut line only misleads.
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
		s = fmt.Sprintf("[earlier output cut: only the last %d KiB are kept]\n%s", len(t.buf)>>10, s)
	}
	return s
}
