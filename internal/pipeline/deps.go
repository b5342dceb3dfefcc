package pipeline

import (
	"context"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// Repo is the app's git repository as the controller needs it. Commits are
// full 40-hex hashes.
type Repo interface {
	// Fetch brings the local copy up to date with the remote.
	Fetch(ctx context.Context) error
	// Head returns the commit a branch points at, or "" when it does not exist.
	Head(ctx context.Context, branch string) (string, error)
	// Resolve turns a revision (hash, prefix, branch, tag) into a full commit.
	Resolve(ctx context.Context, rev string) (string, error)
	// IsAncestor reports whether ancestor is reachable from descendant
	// (a commit is its own ancestor).
	IsAncestor(ctx context.Context, ancestor, descendant string) (bool, error)
	// Commits lists the commits reachable from include and not from exclude
	// (all of include's history when exclude is ""), newest first, at most limit.
	Commits(ctx context.Context, exclude, include string, limit int) ([]Commit, error)
	// MoveBranch points branch at to on the remote, only if it still points at
	// from ("" meaning it must not exist). It may move backwards.
	MoveBranch(ctx context.Context, branch, from, to string) error
	// TagRelease puts an annotated tag on commit and pushes it; an existing
	// tag of that name on that commit is left alone.
	TagRelease(ctx context.Context, name, commit, message string) error
}

// Commit is one commit of the repository.
type Commit struct {
	Hash    string    `json:"commit"`
	Short   string    `json:"shortCommit"`
	Subject string    `json:"subject"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
}

// Image is a built image, pinned by digest.
type Image struct {
	Ref    string // REGISTRY/REPO@sha256:…
	Digest string // sha256:…
	// Schema is what the image declares about the database schema (its
	// labels, docs/migrations.md).
	Schema ledger.Schema
}

// Builder tests and builds a commit into an image; a commit built before is
// not built again. The repository is fetched first when it does not have
// the commit yet; check, when not nil, runs then, before anything is tested,
// and its error fails the build.
type Builder interface {
	Build(ctx context.Context, commit string, check func(ctx context.Context, commit string) error) (Image, error)
}

// Tagger points a tag of the app's image repository at a digest.
type Tagger interface {
	Tag(ctx context.Context, digest, tag string) error
}

// Deployer rolls environments out.
type Deployer interface {
	// Deploy rolls d.Env out to d's image (by digest) and replica count (0
	// stops it), and returns once every new replica is ready; on error the
	// environment keeps serving what it ran.
	Deploy(ctx context.Context, d ledger.Deployment) error
	// Status reports what the environment serves, or deploy.ErrNotDeployed.
	Status(ctx context.Context, env string) (deploy.Status, error)
}

// Smoker runs the smoke tests of commit against an environment's URL; an
// environment without smoke tests passes.
type Smoker interface {
	Smoke(ctx context.Context, env, commit, url string) error
}

// Store is the ledger of deployments.
type Store interface {
	Create(ctx context.Context, d *ledger.Deployment) error
	Update(ctx context.Context, d *ledger.Deployment) error
	Get(ctx context.Context, id int64) (ledger.Deployment, error)
	Current(ctx context.Context, env string) (ledger.Deployment, error)
	LastFailure(ctx context.Context, env string, after int64) (ledger.Deployment, error)
	InFlight(ctx context.Context) ([]ledger.Deployment, error)
	Latest(ctx context.Context, env string, limit int) ([]ledger.Deployment, error)
	LatestForCommit(ctx context.Context, env string, kind ledger.DeploymentKind, commit string) (ledger.Deployment, error)
	Verified(ctx context.Context, env string) (ledger.Deployment, error)
	Releases(ctx context.Context, env string, limit int) ([]ledger.Deployment, error)
	ReleaseByName(ctx context.Context, env, name string) (ledger.Deployment, error)
	ReleaseByCommit(ctx context.Context, env, commit string) (ledger.Deployment, error)
	ReleaseNames(ctx context.Context, prefix string) ([]string, error)
	// Migrated is what env's database has been migrated to (schema.go).
	Migrated(ctx context.Context, env string) (ledger.Migrated, error)
	// The steps of a deployment, each recorded as it starts and ends.
	StartStep(ctx context.Context, deploymentID int64, name string) (ledger.Step, error)
	UpdateStep(ctx context.Context, s *ledger.Step) error
	FinishStep(ctx context.Context, s *ledger.Step) error
	Steps(ctx context.Context, deploymentID int64) ([]ledger.Step, error)
	// The release phase of a deployment, recorded before it runs and
	// when it ends (releasephase.go).
	StartReleasePhase(ctx context.Context, deploymentID int64, digest string) error
	FinishReleasePhase(ctx context.Context, deploymentID int64, state string) error
	LastReleasePhase(ctx context.Context, env string, after int64) (ledger.ReleasePhase, error)
}

var _ Store = (*ledger.Deployments)(nil)
