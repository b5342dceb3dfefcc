package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// follow prints d's steps on stderr as they start and end, with the
// runtime's progress, until d ends; then its outcome on stdout, and, when
// it did not succeed, what the environment runs now. A deployment that did
// not succeed is ErrOperationFailed.
func follow(cmd *cobra.Command, c *clientOptions, output outputFlag, d ledger.Deployment, noWait bool) error {
	ctx, stdout := cmd.Context(), cmd.OutOrStdout()
	if noWait {
		if output.json() {
			return writeJSONTo(stdout, d)
		}
		fmt.Fprintln(stdout, outcome(d))
		return nil
	}
	p := &stepPrinter{w: cmd.ErrOrStderr()}
	detail, err := c.client.Follow(ctx, c.app, d.ID, p.print)
	if err != nil {
		return err
	}
	d = detail.Deployment
	if output.json() {
		if err := writeJSONTo(stdout, detail); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout, outcome(d))
		if d.State != ledger.StateSucceeded {
			if line := nowRuns(ctx, c, d.Env); line != "" {
				fmt.Fprintln(stdout, line)
			}
		}
	}
	if d.State != ledger.StateSucceeded {
		return fmt.Errorf("%s %d %s: %s: %w", d.Kind, d.ID, d.State, d.Reason, ErrOperationFailed)
	}
	return nil
}

// stepPrinter writes a deployment's steps as plain lines, each change once:
// a step that starts, each progress message of a running step, and how it
// ended, with its duration.
type stepPrinter struct {
	w io.Writer
	// seen is what was printed of each step (by id): its last message and
	// whether its end was printed.
	seen map[int64]*printedStep
	last string // state/step of a controller that records no steps
}

type printedStep struct {
	message string
	ended   bool
}

func (p *stepPrinter) print(d api.DeploymentDetail) {
	if d.Steps == nil {
		// A controller that records no steps: its row's step is all.
		if key := string(d.State) + "/" + d.Step; key != p.last && !d.State.Final() {
			p.last = key
			fmt.Fprintf(p.w, "  %s: %s\n", d.State, d.Step)
		}
		return
	}
	if p.seen == nil {
		p.seen = map[int64]*printedStep{}
	}
	for _, s := range d.Steps {
		ps, ok := p.seen[s.ID]
		if !ok {
			ps = &printedStep{}
			p.seen[s.ID] = ps
			if s.State == ledger.StepRunning {
				fmt.Fprintf(p.w, "  %s: started\n", s.Name)
			}
		}
		if ps.ended {
			continue
		}
		if s.State == ledger.StepRunning {
			if s.Message != "" && s.Message != ps.message {
				ps.message = s.Message
				fmt.Fprintf(p.w, "  %s: %s\n", s.Name, firstLineOf(s.Message))
			}
			continue
		}
		ps.ended = true
		line := fmt.Sprintf("  %s: %s", s.Name, stepEnd(s))
		if s.Message != "" && s.Message != ps.message {
			line += ": " + firstLineOf(s.Message)
		}
		fmt.Fprintln(p.w, line)
	}
}

// stepEnd says how a finished step ended: "succeeded in 1.2s".
func stepEnd(s ledger.Step) string {
	took := roundDuration(s.Duration(s.Finished))
	switch s.State {
	case ledger.StepSucceeded:
		return "succeeded in " + took
	case ledger.StepFailed:
		return "failed after " + took
	}
	return s.State
}

// roundDuration renders d as people read it: 340ms, 2.3s, 1m12s.
func roundDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// outcome is the line that ends a followed deployment: what runs now when
// it succeeded, why not otherwise.
func outcome(d ledger.Deployment) string {
	name := d.ReleaseName
	if name == "" {
		name = short(d.Commit)
	} else {
		name += " (" + short(d.Commit) + ")"
	}
	switch {
	case !d.State.Final():
		return fmt.Sprintf("%s of %s to %s: %s (follow it with: slipway status)", d.Kind, name, d.Env, d.State)
	case d.State == ledger.StateSucceeded && d.Kind == ledger.KindScale:
		return fmt.Sprintf("%s runs %s of %s, %s", d.Env, replicas(d.Replicas), name, shortDigest(d.Digest))
	case d.State == ledger.StateSucceeded && d.Kind == ledger.KindStop:
		return fmt.Sprintf("%s is stopped: its address answers 503 until slipway start %s", d.Env, d.Env)
	case d.State == ledger.StateSucceeded && d.Kind == ledger.KindStart:
		return fmt.Sprintf("%s runs again: %s of %s, %s", d.Env, replicas(d.Replicas), name, shortDigest(d.Digest))
	case d.State == ledger.StateSucceeded:
		return fmt.Sprintf("%s is live on %s: %s, %s", name, d.Env, replicas(d.Replicas), shortDigest(d.Digest))
	}
	return fmt.Sprintf("%s of %s to %s %s: %s", d.Kind, name, d.Env, d.State, d.Reason)
}

// nowRuns says what env runs, as the controller's status reports it, after
// a deployment that did not succeed; "" when the status cannot be read.
func nowRuns(ctx context.Context, c *clientOptions, env string) string {
	st, err := c.client.Status(ctx, c.app)
	if err != nil {
		return ""
	}
	for _, e := range st.Environments {
		if e.Name == env {
			return envRuns(e)
		}
	}
	return ""
}

// envRuns is one line saying what an environment runs: "prod runs
// RC20261127_0930 (1a2b3c4), sha256:6e1f2a3b4c5d, 4/4 replicas ready".
func envRuns(e pipeline.EnvStatus) string {
	switch {
	case e.Stopped:
		return fmt.Sprintf("%s is stopped", e.Name)
	case e.Commit == nil:
		return fmt.Sprintf("%s runs nothing yet", e.Name)
	}
	name := short(*e.Commit)
	if e.Release != nil && *e.Release != "" {
		name = *e.Release + " (" + name + ")"
	}
	digest := ""
	if e.Digest != nil {
		digest = ", " + shortDigest(*e.Digest)
	}
	return fmt.Sprintf("%s runs %s%s, %d/%d replicas ready", e.Name, name, digest, e.Replicas.Ready, e.Replicas.Desired)
}
