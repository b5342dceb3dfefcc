package pipeline

import (
	"context"
	"fmt"
	"time"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/notify"
)

// Notifier records events for the app's outgoing webhooks (notify.Outbox);
// it writes and returns, never waiting for a delivery. A nil Notifier in
// Deps sends nothing.
type Notifier interface {
	Notify(ctx context.Context, e notify.Event) error
}

var _ Notifier = (*notify.Outbox)(nil)

// Notify records e for the app's notifications, stamped with the app's
// name. It is what the pipeline's flows call: the deployments' outcomes
// here; locks and break-glass where they are decided, such as
//
//	c.Notify(ctx, notify.Event{Kind: notify.Locked, Env: env, Actor: who, Reason: why})
//
// Kind, Env, Actor and Reason are enough: the rest is filled in or left
// out of the body, and the summary is made from them. A write that fails
// is tried again, with the ledger's backoff, until it succeeds or ctx
// ends (then it is logged, and lost).
func (c *Controller) Notify(ctx context.Context, e notify.Event) {
	if c.deps.Notifier == nil {
		return
	}
	e.App = c.cfg.App
	if e.Key != "" {
		e.Key = c.cfg.App + "/" + e.Key
	}
	backoff := c.cfg.RetryBackoff
	for {
		err := c.deps.Notifier.Notify(ctx, e)
		if err == nil {
			return
		}
		c.log.Error("record a notification, trying again", "event", e.Kind, "env", e.Env, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			c.log.Error("notification not recorded: the controller stops", "event", e.Kind, "env", e.Env)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// deploymentEvent is the event of kind about d.
func deploymentEvent(kind string, d *ledger.Deployment) notify.Event {
	e := notify.Event{Kind: kind, Env: d.Env, Commit: d.Commit, Release: d.ReleaseName, Digest: d.Digest,
		Deployment: d.ID, Trigger: d.Trigger, Reason: d.Reason,
		Key: fmt.Sprintf("deployment/%d/%s/%s", d.ID, d.CreatedAt.UTC().Format(time.RFC3339Nano), kind)}
	if kind == notify.Released && d.Forced {
		e.Reason = "forced: " + d.ForceReason
	}
	return e
}

// finalEvent is the event a deployment's final state is announced with,
// or "" for none (a scale, stop or start that worked).
func finalEvent(d *ledger.Deployment) string {
	switch {
	case d.State == ledger.StateRefused:
		return notify.Refused
	case d.State == ledger.StateRolledBack:
		return notify.AutoRollback
	case d.Kind == ledger.KindDeploy && d.State == ledger.StateSucceeded:
		return notify.Verified
	case d.Kind == ledger.KindRelease && d.State == ledger.StateSucceeded:
		return notify.Released
	case d.Kind == ledger.KindRollback && d.State == ledger.StateSucceeded:
		return notify.RolledBack
	case d.State != ledger.StateFailed:
		return ""
	case d.Kind == ledger.KindDeploy && d.Step == "build":
		return notify.BuildFailed
	case d.Kind == ledger.KindDeploy && rolledOutBy(d.Step) && d.PreviousID != 0:
		// The new version ran and failed its checks: the environment was
		// put back on the one before (restore).
		return notify.AutoRollback
	}
	return notify.DeployFailed
}

// rolledOutBy reports whether an automatic deployment that failed at step
// had rolled its new version out.
func rolledOutBy(step string) bool {
	return step == "health" || step == "smoke" || step == "tags"
}

// notifyFinal announces d's final state. finish calls it before it writes
// that state: a stop in between leaves the row in flight, and the next
// start finishes it and announces it again, under the same Key, which is
// not sent twice. So an outcome is announced at least once.
func (c *Controller) notifyFinal(ctx context.Context, d *ledger.Deployment) {
	if kind := finalEvent(d); kind != "" {
		c.Notify(ctx, deploymentEvent(kind, d))
	}
}
