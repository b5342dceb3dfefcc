package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// Status is what runs where: the answer of `slipway status`. Its JSON form
// is a documented contract (docs/api.md).
type Status struct {
	// App is the application's name.
	App          string      `json:"app"`
	Environments []EnvStatus `json:"environments"`
	// Pending are the commits of the source branch the controlled
	// environment does not run, newest first.
	Pending []Commit `json:"pending"`
}

// EnvStatus is one environment in Status.
type EnvStatus struct {
	Name        string     `json:"name"`
	Branch      string     `json:"branch"`
	Commit      *string    `json:"commit"`
	ShortCommit *string    `json:"shortCommit"`
	Release     *string    `json:"release"`
	Image       *string    `json:"image"`
	Digest      *string    `json:"digest"`
	Replicas    Replicas   `json:"replicas"`
	Healthy     bool       `json:"healthy"`
	Since       *time.Time `json:"since"`
	URL         string     `json:"url"`
	LastFailure *string    `json:"lastFailure"`
	Rollout     *Rollout   `json:"rollout"`
	// Isolation is how the runtime confines replicas: namespaces+chroot
	// or process (local), container (kubernetes); null when nothing runs.
	Isolation *string `json:"isolation"`
	// Message is what the runtime says is wrong (crash-looping replicas,
	// drift from what slipway applied), or null.
	Message   *string    `json:"message"`
	Instances []Instance `json:"instances"`
	// Mode is automatic or controlled.
	Mode string `json:"mode"`
	// From is the environment an automatic environment takes verified
	// commits from ("" when it tracks a branch).
	From string `json:"from"`
	// Tag is the registry tag that names the environment's current image
	// (env-NAME).
	Tag string `json:"tag"`
	// Stopped is true when the environment was stopped (slipway stop):
	// nothing runs and its address answers 503.
	Stopped bool `json:"stopped"`
}

// Instance is one replica of an environment, as the runtime reports it.
type Instance struct {
	Name   string `json:"name"`
	Commit string `json:"commit"`
	// State is starting, ready, unready, draining, restarting or
	// crash-looping (Kubernetes reports all but draining and restarting).
	State    string    `json:"state"`
	Ready    bool      `json:"ready"`
	Restarts int       `json:"restarts"`
	Since    time.Time `json:"since"`
	Message  string    `json:"message,omitempty"`
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
}

// maxPending bounds the pending list.
const maxPending = 100

// Status reports every environment and the commits prod does not have.
func (c *Controller) Status(ctx context.Context) (Status, error) {
	out := Status{Environments: []EnvStatus{}, Pending: []Commit{}}
	for _, e := range c.cfg.Envs {
		es, err := c.envStatus(ctx, e)
		if err != nil {
			return Status{}, err
		}
		out.Environments = append(out.Environments, es)
	}
	if c.release == nil {
		return out, nil
	}
	master, err := c.deps.Repo.Head(ctx, c.source.Branch)
	if err != nil {
		return Status{}, err
	}
	if master == "" {
		return out, nil
	}
	cur, err := c.deps.Store.Current(ctx, c.release.Name)
	if err != nil && !errors.Is(err, ledger.ErrNoDeployment) {
		return Status{}, err
	}
	pending, err := c.deps.Repo.Commits(ctx, cur.Commit, master, maxPending)
	if err != nil {
		return Status{}, err
	}
	if pending != nil {
		out.Pending = pending
	}
	return out, nil
}

func (c *Controller) envStatus(ctx context.Context, e Env) (EnvStatus, error) {
	es := EnvStatus{Name: e.Name, Branch: e.Branch, URL: e.URL, Instances: []Instance{}}
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
		since := cur.FinishedAt
		if cur.Kind == ledger.KindScale {
			since = c.sinceOf(ctx, cur)
		}
		es.Since = &since
		es.Replicas.Desired = cur.Replicas
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
	if st := c.envs[e.Name]; st != nil {
		if d := st.inFlight(); d != nil && d.ID != 0 {
			es.Rollout = &Rollout{ID: d.ID, Kind: string(d.Kind), Commit: d.Commit, Release: d.ReleaseName, Step: d.Step}
		}
	}
	if cur.ID != 0 {
		h, err := c.deps.Deployer.Health(ctx, e.Name)
		if err != nil {
			msg := "runtime status unavailable: " + err.Error()
			if es.LastFailure == nil {
				es.LastFailure = &msg
			}
		} else {
			es.Replicas = Replicas{Ready: h.Ready, Desired: h.Desired}
			es.Healthy = h.Healthy
			if h.Isolation != "" {
				es.Isolation = &h.Isolation
			}
			if h.Message != "" {
				es.Message = &h.Message
			}
			if h.Instances != nil {
				es.Instances = h.Instances
			}
			if h.URL != "" {
				es.URL = h.URL
			}
		}
	}
	return es, nil
}

// sinceOf follows scale rows back to the rollout that brought the image.
func (c *Controller) sinceOf(ctx context.Context, d ledger.Deployment) time.Time {
	for range 100 {
		if d.Kind != ledger.KindScale || d.PreviousID == 0 {
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
		if _, ok := c.envs[name]; !ok {
			return nil, fmt.Errorf("diff %s %s: %s: %w (environments: %s)", from, to, name, ErrUnknownEnv, c.envNames())
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
