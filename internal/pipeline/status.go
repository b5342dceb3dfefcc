package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// Status is what runs where: the answer of `slipway status`. Its JSON form
// is a documented contract (docs/api.md).
type Status struct {
	// App is the application's name.
	App          string      `json:"app"`
	Environments []EnvStatus `json:"environments"`
	// Pending are the commits of the chain's branch the final environment
	// does not run, newest first.
	Pending []Commit `json:"pending"`
	// PendingError says why Pending could not be read (the repository not
	// fetched yet, git failing); the environments are reported anyway.
	PendingError string `json:"pendingError,omitempty"`
}

// EnvStatus is one environment in Status.
type EnvStatus struct {
	Name string `json:"name"`
	// Mode is automatic or controlled; From names the environment an
	// automatic one takes its commits from.
	Mode        string  `json:"mode"`
	Branch      string  `json:"branch"`
	From        string  `json:"from"`
	Commit      *string `json:"commit"`
	ShortCommit *string `json:"shortCommit"`
	Release     *string `json:"release"`
	Image       *string `json:"image"`
	Digest      *string `json:"digest"`
	// Tag is the registry tag on the image the environment runs.
	Tag      string     `json:"tag"`
	Replicas Replicas   `json:"replicas"`
	Healthy  bool       `json:"healthy"`
	Stopped  bool       `json:"stopped"`
	Since    *time.Time `json:"since"`
	URL      string     `json:"url"`
	// LastFailure is the newest deployment that failed after the current
	// one, in words.
	LastFailure *string  `json:"lastFailure"`
	Rollout     *Rollout `json:"rollout"`
	// Isolation is how the runtime confines replicas: sandbox
	// or process (local), container (kubernetes); null when nothing runs.
	Isolation *string `json:"isolation"`
	// Message is what the runtime says is wrong (crash-looping replicas,
	// drift from what slipway applied), or null.
	Message   *string          `json:"message"`
	Instances []deploy.Replica `json:"instances"`
	// Locked is the environment's lock (slipway lock), or null.
	Locked *ledger.Lock `json:"locked"`
	// Frozen is the freeze window that holds the environment now, or null.
	Frozen *Frozen `json:"frozen"`
	// Pinned is the pin a rollback of an automatic environment left, or
	// null: it stays on that version until its feed moves or slipway unpin.
	Pinned *ledger.Pin `json:"pinned"`
	// Waiting is the commit an automatic environment holds back while it
	// is locked or frozen, and why; null when none waits.
	Waiting *Waiting `json:"waiting"`
	// Schema is what the running image declares about the database
	// schema, and Migrated what the environment's database has been
	// migrated to (docs/migrations.md); omitted when nothing is known.
	Schema   *ledger.Schema   `json:"schema,omitempty"`
	Migrated *ledger.Migrated `json:"migrated,omitempty"`
}

// Replicas counts an environment's replicas.
type Replicas struct {
	Ready   int `json:"ready"`
	Desired int `json:"desired"`
}

// Rollout is a deployment in flight.
type Rollout struct {
	ID      int64  `json:"id"`
	Kind    string `json:"kind"`
	Commit  string `json:"commit"`
	Release string `json:"release"`
	Step    string `json:"step"`
	// Waiting says why the rollout does not go on (a step tried again, a
	// ledger write that failed), or is empty.
	Waiting string `json:"waiting,omitempty"`
}

// maxPending bounds the pending list.
const maxPending = 100

// Status reports every environment and the commits the final environment
// does not have.
func (c *Controller) Status(ctx context.Context) (Status, error) {
	out := Status{App: c.cfg.App, Environments: []EnvStatus{}, Pending: []Commit{}}
	for _, e := range c.cfg.Envs {
		es, err := c.envStatus(ctx, e)
		if err != nil {
			return Status{}, err
		}
		out.Environments = append(out.Environments, es)
	}
	root := c.rootBranch(c.final)
	if root == c.final {
		return out, nil
	}
	tip, err := c.deps.Repo.Head(ctx, root.Branch)
	if err != nil {
		out.PendingError = err.Error()
		return out, nil
	}
	if tip == "" {
		return out, nil
	}
	cur, err := c.deps.Store.Current(ctx, c.final.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		return Status{}, err
	}
	pending, err := c.deps.Repo.Commits(ctx, cur.Commit, tip, maxPending)
	if err != nil {
		out.PendingError = err.Error()
		return out, nil
	}
	if pending != nil {
		out.Pending = pending
	}
	return out, nil
}

func (c *Controller) envStatus(ctx context.Context, e Env) (EnvStatus, error) {
	es := EnvStatus{Name: e.Name, Mode: "controlled", Branch: e.Branch, From: e.From, Tag: EnvTag(e.Name), URL: e.URL, Instances: []deploy.Replica{}}
	if e.Automatic {
		es.Mode = "automatic"
	}
	c.holdStatus(&e, &es)
	cur, err := c.deps.Store.Current(ctx, e.Name)
	switch {
	case errors.Is(err, ledger.ErrNoDeployment):
	case err != nil:
		return EnvStatus{}, err
	default:
		short := shortHash(cur.Commit)
		es.Commit, es.ShortCommit = &cur.Commit, &short
		es.Image, es.Digest = &cur.Image, &cur.Digest
		if cur.ReleaseName != "" {
			es.Release = &cur.ReleaseName
		}
		since := c.sinceOf(ctx, cur)
		es.Since = &since
		es.Replicas.Desired = cur.Replicas
		es.Stopped = cur.Kind == ledger.KindStop
		if err := c.schemaStatus(ctx, cur, &es); err != nil {
			return EnvStatus{}, err
		}
	}
	failed, err := c.deps.Store.LastFailure(ctx, e.Name, cur.ID)
	switch {
	case errors.Is(err, ledger.ErrNoDeployment):
	case err != nil:
		return EnvStatus{}, err
	default:
		msg := fmt.Sprintf("%s of %s %s at %s: %s", failed.Kind, shortHash(failed.Commit), failed.State,
			failed.FinishedAt.Format(time.RFC3339), failed.Reason)
		es.LastFailure = &msg
	}
	if d, waiting, ok := c.rollouts.snapshot(e.Name); ok && d.ID != 0 && !d.State.Final() {
		es.Rollout = &Rollout{ID: d.ID, Kind: string(d.Kind), Commit: d.Commit, Release: d.ReleaseName, Step: d.Step, Waiting: waiting}
	}
	if cur.ID == 0 {
		return es, nil
	}
	st, err := c.deps.Deployer.Status(ctx, e.Name)
	switch {
	case errors.Is(err, deploy.ErrNotDeployed):
		es.Replicas.Ready = 0
	case err != nil:
		msg := "runtime status unavailable: " + err.Error()
		es.Message = &msg
	default:
		es.Replicas = Replicas{Ready: st.Replicas.Ready, Desired: st.Replicas.Desired}
		es.Healthy = st.Healthy && !es.Stopped
		if st.Isolation != "" {
			iso := string(st.Isolation)
			es.Isolation = &iso
		}
		if st.Message != "" {
			es.Message = &st.Message
		}
		if st.Instances != nil {
			es.Instances = st.Instances
		}
		if st.URL != "" {
			es.URL = st.URL
		}
	}
	return es, nil
}

// waitHealthy waits until env reports healthy with at least want replicas
// ready, or until the health timeout.
func (c *Controller) waitHealthy(ctx context.Context, env string, want int) error {
	deadline := time.NewTimer(c.cfg.HealthTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last deploy.Status
	for {
		st, err := c.deps.Deployer.Status(ctx, env)
		if err == nil {
			msg := fmt.Sprintf("%d of %d replicas ready", st.Replicas.Ready, want)
			if st.Message != "" && !st.Healthy {
				msg += ": " + st.Message
			}
			deploy.ReportProgress(ctx, msg)
		}
		if err == nil && st.Healthy && st.Replicas.Ready >= want {
			return nil
		}
		last = st
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			if err != nil {
				return err
			}
			return fmt.Errorf("%d of %d replicas ready after %s", last.Replicas.Ready, want, c.cfg.HealthTimeout)
		case <-tick.C:
		}
	}
}

// sinceOf follows scale, stop and start rows back to the rollout that
// brought the image.
func (c *Controller) sinceOf(ctx context.Context, d ledger.Deployment) time.Time {
	for range 100 {
		if (d.Kind != ledger.KindScale && d.Kind != ledger.KindStop && d.Kind != ledger.KindStart) || d.PreviousID == 0 {
			break
		}
		p, err := c.deps.Store.Get(ctx, d.PreviousID)
		if err != nil || p.Commit != d.Commit {
			break
		}
		d = p
	}
	return d.FinishedAt
}

// Diff lists the commits that environment from runs and environment to does
// not, newest first.
func (c *Controller) Diff(ctx context.Context, from, to string) ([]Commit, error) {
	commits := map[string]string{}
	for _, name := range []string{from, to} {
		if _, err := c.env("diff "+from+" "+to+":", name); err != nil {
			return nil, err
		}
		cur, err := c.deps.Store.Current(ctx, name)
		if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
			return nil, err
		}
		commits[name] = cur.Commit
	}
	if commits[from] == "" {
		return []Commit{}, nil
	}
	list, err := c.deps.Repo.Commits(ctx, commits[to], commits[from], maxPending)
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = []Commit{}
	}
	return list, nil
}
