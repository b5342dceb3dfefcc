// Package notify sends slipway's events to outgoing webhooks without ever
// losing one: Notify writes each event to the outbox in the ledger, one row
// per destination that asks for it, and returns; a Deliverer posts the rows,
// signed, and tries again with backoff until the destination answers 2xx
// or a day has passed. A row survives restarts and is sent with the same
// delivery id every time, so that receivers can drop copies.
package notify

import (
	"context"
	"fmt"
	"time"
)

// Event kinds, as destinations name them in events: [...].
const (
	BuildFailed  = "build.failed"  // a commit's tests or build failed
	Deployed     = "deployed"      // an automatic environment runs a new version, healthy
	DeployFailed = "deploy.failed" // a deployment failed and nothing was rolled back
	Verified     = "verified"      // a commit passed an automatic environment's checks
	Released     = "released"      // a release is live on a controlled environment
	Refused      = "refused"       // the release preflight refused a commit
	RolledBack   = "rolled_back"   // a rollback on request is live
	AutoRollback = "auto_rollback" // slipway put an environment back by itself
	Locked       = "locked"        // an environment was locked
	Unlocked     = "unlocked"      // an environment was unlocked
	BreakGlass   = "break_glass"   // a lock or freeze was overridden
)

// Event is something that happened to an app. Its JSON form is the body of
// the json format (docs/api.md), with the delivery's id added.
type Event struct {
	Kind string    `json:"event"`
	Time time.Time `json:"time"`
	App  string    `json:"app"`
	Env  string    `json:"env,omitempty"`
	// Commit is the full commit hash.
	Commit  string `json:"commit,omitempty"`
	Release string `json:"release,omitempty"` // RC name
	Digest  string `json:"digest,omitempty"`
	// Deployment is the ledger's deployment id, for slipway's API.
	Deployment int64 `json:"deployment,omitempty"`
	// Trigger is what started it: push to master, cli, api, controller.
	Trigger string `json:"trigger,omitempty"`
	// Actor is who did it, for locks and break-glass.
	Actor string `json:"actor,omitempty"`
	// Reason is why it failed, was refused or was forced.
	Reason string `json:"reason,omitempty"`
	// Message is one line for people; empty: made from the fields above.
	Message string `json:"message"`
	// Key, when set, names the event for good, such as the outcome of one
	// deployment: an event is written once per Key and destination, with a
	// delivery id made from them, so that a flow which announces the same
	// outcome again after a restart sends it once. Empty: every Notify is
	// a new event.
	Key string `json:"-"`
}

// Notifier records events to be delivered; it never waits for delivery.
type Notifier interface {
	Notify(ctx context.Context, e Event) error
}

// Summary is e's one line for people: its Message, or one made from its
// fields, such as "web: released RC20261202_1150 (1a2b3c4) to prod".
func (e Event) Summary() string {
	if e.Message != "" {
		return e.Message
	}
	what := e.describe()
	switch e.Kind {
	case BuildFailed:
		return fmt.Sprintf("%s: the build of %s failed%s", e.App, what, because(e.Reason))
	case Deployed:
		return fmt.Sprintf("%s: %s runs %s", e.App, e.Env, what)
	case DeployFailed:
		return fmt.Sprintf("%s: the deployment of %s to %s failed%s", e.App, what, e.Env, because(e.Reason))
	case Verified:
		return fmt.Sprintf("%s: %s is verified on %s", e.App, what, e.Env)
	case Released:
		return fmt.Sprintf("%s: released %s to %s", e.App, what, e.Env)
	case Refused:
		return fmt.Sprintf("%s: the release of %s to %s was refused%s", e.App, what, e.Env, because(e.Reason))
	case RolledBack:
		return fmt.Sprintf("%s: %s rolled back to %s", e.App, e.Env, what)
	case AutoRollback:
		return fmt.Sprintf("%s: %s of %s was rolled back automatically%s", e.App, e.Env, what, because(e.Reason))
	case Locked:
		return fmt.Sprintf("%s: %s locked%s%s", e.App, e.Env, by(e.Actor), because(e.Reason))
	case Unlocked:
		return fmt.Sprintf("%s: %s unlocked%s%s", e.App, e.Env, by(e.Actor), because(e.Reason))
	case BreakGlass:
		return fmt.Sprintf("%s: break-glass on %s%s%s", e.App, e.Env, by(e.Actor), because(e.Reason))
	}
	s := fmt.Sprintf("%s: %s", e.App, e.Kind)
	if e.Env != "" {
		s += " " + e.Env
	}
	return s + by(e.Actor) + because(e.Reason)
}

func by(actor string) string {
	if actor == "" {
		return ""
	}
	return " by " + actor
}

// describe names e's version: its release and short commit.
func (e Event) describe() string {
	c := e.Commit
	if len(c) > 7 {
		c = c[:7]
	}
	switch {
	case e.Release != "" && c != "":
		return e.Release + " (" + c + ")"
	case e.Release != "":
		return e.Release
	case c != "":
		return c
	}
	return "an unnamed version"
}

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}
