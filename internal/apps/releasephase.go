package apps

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

var _ pipeline.ReleasePhaser = Runtime{}

// ReleasePhase runs the release command of d's environment from d's image,
// through the runtime, with the environment's spec: its variables,
// secrets and DATABASE_URL.
func (r Runtime) ReleasePhase(ctx context.Context, d ledger.Deployment, out io.Writer) error {
	e, ok := r.Config.Environment(d.Env)
	if !ok {
		return fmt.Errorf("release phase of %s: %w", d.Env, pipeline.ErrUnknownEnv)
	}
	rp := r.Config.ReleasePhase(e)
	if !rp.Enabled() {
		return nil
	}
	runner, ok := r.Backend.(deploy.ReleaseRunner)
	if !ok {
		return fmt.Errorf("release phase of %s: the %s runtime cannot run release commands", d.Env, r.Config.Runtime)
	}
	spec, err := r.Spec(d)
	if err != nil {
		return err
	}
	return runner.RunRelease(ctx, spec, ReleaseJob(d, rp), out)
}

// ReleaseJob is the release phase rp as d's runtime runs it.
func ReleaseJob(d ledger.Deployment, rp config.ReleasePhase) deploy.ReleaseJob {
	return deploy.ReleaseJob{ID: strconv.FormatInt(d.ID, 10), Command: rp.Command, Timeout: rp.Timeout}
}
