package pipeline

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/notify"
)

// The fakes below stand in for git, the builder, the registry and the
// runtime in the unit tests of the pipeline's logic; the ledger is the real
// SQLite table. test/e2e runs the pipeline against the real parts.

func openStore(t *testing.T, now func() time.Time) *ledger.Deployments {
	t.Helper()
	st, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.SetClock(now)
	return st.Deployments()
}

type fakeRepo struct {
	fetches   atomic.Int64
	fetchGate chan struct{} // when set, each fetch waits for a receive
	mu        sync.Mutex
	parents   map[string][]string
	branches  map[string]string
	tags      map[string]string
	moves     []string
}

func newFakeRepo() *fakeRepo {
	return &fakeRepo{parents: map[string][]string{}, branches: map[string]string{}, tags: map[string]string{}}
}

// commit adds a commit on top of parent and returns its hash.
func (r *fakeRepo) commit(name string, parents ...string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := fmt.Sprintf("%x", []byte(name))
	for len(h) < 40 {
		h += "0"
	}
	h = h[:40]
	r.parents[h] = parents
	return h
}

func (r *fakeRepo) setBranch(b, c string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.branches[b] = c
}

func (r *fakeRepo) branch(b string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.branches[b]
}

func (r *fakeRepo) Fetch(ctx context.Context) error {
	r.fetches.Add(1)
	r.mu.Lock()
	gate := r.fetchGate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *fakeRepo) Head(ctx context.Context, b string) (string, error) { return r.branch(b), nil }

func (r *fakeRepo) Resolve(ctx context.Context, rev string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.branches[rev]; ok {
		return c, nil
	}
	if _, ok := r.parents[rev]; ok {
		return rev, nil
	}
	return "", fmt.Errorf("unknown revision %s", rev)
}

func (r *fakeRepo) reach(c string) map[string]bool {
	seen := map[string]bool{}
	stack := []string{c}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x == "" || seen[x] {
			continue
		}
		seen[x] = true
		stack = append(stack, r.parents[x]...)
	}
	return seen
}

func (r *fakeRepo) IsAncestor(ctx context.Context, a, d string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reach(d)[a], nil
}

func (r *fakeRepo) Commits(ctx context.Context, exclude, include string, limit int) ([]Commit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ex := r.reach(exclude)
	var out []Commit
	for c := include; c != "" && !ex[c]; {
		out = append(out, Commit{Hash: c, Short: c[:7]})
		p := r.parents[c]
		if len(p) == 0 {
			break
		}
		c = p[0]
	}
	return out, nil
}

func (r *fakeRepo) MoveBranch(ctx context.Context, b, from, to string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.branches[b] != from {
		return fmt.Errorf("branch %s moved: at %s, not %s", b, r.branches[b], from)
	}
	r.branches[b] = to
	r.moves = append(r.moves, b+"="+shortHash(to))
	return nil
}

func (r *fakeRepo) TagRelease(ctx context.Context, name, commit, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.tags[name]; ok && c != commit {
		return fmt.Errorf("tag %s exists on %s", name, c)
	}
	r.tags[name] = commit
	return nil
}

type fakeBuilder struct {
	mu        sync.Mutex
	fail      map[string]bool
	transient map[string]int // commit → failures (transient) before it builds
	builds    []string
	gate      chan struct{}            // when set, each build waits for a receive
	schema    map[string]ledger.Schema // commit → what its image declares
}

func digestOf(commit string) string { return "sha256:" + commit + commit[:24] }

func (b *fakeBuilder) Build(ctx context.Context, commit string, check func(context.Context, string) error) (Image, error) {
	if check != nil {
		if err := check(ctx, commit); err != nil {
			return Image{}, err
		}
	}
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return Image{}, ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.builds = append(b.builds, commit)
	if b.transient[commit] > 0 {
		b.transient[commit]--
		return Image{}, Transient(errors.New("push: registry answered 503"))
	}
	if b.fail[commit] {
		return Image{}, errors.New("go test: FAIL")
	}
	return Image{Ref: "127.0.0.1:5000/app@" + digestOf(commit), Digest: digestOf(commit), Schema: b.schema[commit]}, nil
}

type fakeTagger struct {
	mu   sync.Mutex
	tags map[string]string
}

func (f *fakeTagger) Tag(ctx context.Context, digest, tag string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tags[tag] = digest
	return nil
}

func (f *fakeTagger) get(tag string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tags[tag]
}

type running struct {
	digest   string
	replicas int
}

type fakeDeployer struct {
	mu      sync.Mutex
	envs    map[string]running
	failing map[string]bool // digests that never become ready
	applied []string
	gate    chan struct{}
	urls    map[string]string // where the runtime says an environment is reached
}

func (f *fakeDeployer) Deploy(ctx context.Context, d ledger.Deployment) error {
	env, commit, replicas := d.Env, d.Commit, d.Replicas
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, fmt.Sprintf("%s=%s×%d", env, shortHash(commit), replicas))
	deploy.ReportProgress(ctx, fmt.Sprintf("0 of %d replicas of %s ready, %d starting", replicas, shortHash(commit), replicas))
	if f.failing[d.Digest] {
		return errors.New("replica 1 not ready within 10s")
	}
	f.envs[env] = running{d.Digest, replicas}
	deploy.ReportProgress(ctx, fmt.Sprintf("%d of %d replicas of %s ready", replicas, replicas, shortHash(commit)))
	return nil
}

func (f *fakeDeployer) Status(ctx context.Context, env string) (deploy.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.envs[env]
	if !ok {
		return deploy.Status{}, deploy.ErrNotDeployed
	}
	if r.replicas == 0 {
		return deploy.Status{Environment: env, Stopped: true}, nil
	}
	return deploy.Status{Environment: env, Replicas: deploy.Replicas{Ready: r.replicas, Desired: r.replicas}, Healthy: true, URL: f.urls[env]}, nil
}

func (f *fakeDeployer) running(env string) running {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.envs[env]
}

type fakeSmoker struct {
	mu   sync.Mutex
	fail map[string]bool
}

func (f *fakeSmoker) Smoke(ctx context.Context, env, commit, url string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[commit] {
		return errors.New("--- FAIL: TestGreeting")
	}
	return nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
	// mono is the monotonic clock: Add moves it with t, Jump does not.
	mono time.Duration
}

// Monotonic is the controller's monotonic clock.
func (c *clock) Monotonic() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// Jump moves the wall clock only, as an NTP step or a manual change does.
func (c *clock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.mono += d
}

type harness struct {
	t        *testing.T
	repo     *fakeRepo
	builder  *fakeBuilder
	tagger   *fakeTagger
	deployer *fakeDeployer
	smoker   *fakeSmoker
	store    *ledger.Deployments
	clock    *clock
	// storeOverride, when set, is the controller's Store instead of store.
	storeOverride Store
	// repoOverride, when set, is the controller's Repo instead of repo.
	repoOverride Repo
	// onChange, when set, is the controller's OnChange.
	onChange func()
	// notifier, when set, is the controller's Notifier; notes, when
	// not, records the notifications of locks and break-glass.
	notifier Notifier
	notes    *notes
	// releaser, when set, is the controller's ReleasePhase.
	releaser ReleasePhaser
	c        *Controller
	cancel   context.CancelFunc
	done     chan error
}

func newHarness(t *testing.T) *harness {
	h := &harness{
		t:        t,
		repo:     newFakeRepo(),
		builder:  &fakeBuilder{fail: map[string]bool{}},
		tagger:   &fakeTagger{tags: map[string]string{}},
		deployer: &fakeDeployer{envs: map[string]running{}, failing: map[string]bool{}},
		smoker:   &fakeSmoker{fail: map[string]bool{}},
		clock:    &clock{t: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)},
		notes:    &notes{},
	}
	h.store = openStore(t, h.clock.Now)
	return h
}

var testEnvs = []Env{
	{Name: "dev", Branch: "master", Automatic: true, URL: "http://127.0.0.1:8081", Replicas: 2},
	{Name: "prod", Branch: "release", RequireVerifiedOn: "dev", URL: "http://127.0.0.1:8080", Replicas: 4},
}

func (h *harness) start(envs ...Env) {
	h.t.Helper()
	if len(envs) == 0 {
		envs = slices.Clone(testEnvs)
	}
	var store Store = h.store
	if h.storeOverride != nil {
		store = h.storeOverride
	}
	var repo Repo = h.repo
	if h.repoOverride != nil {
		repo = h.repoOverride
	}
	var notifier Notifier = h.notes
	if h.notifier != nil {
		notifier = h.notifier
	}
	c, err := New(Config{Envs: envs, PollInterval: time.Hour, HealthTimeout: time.Second, RetryFor: time.Second, RetryBackoff: 10 * time.Millisecond}, Deps{
		Repo: repo, Builder: h.builder, Tagger: h.tagger, Deployer: h.deployer,
		Smoker: h.smoker, Store: store, Now: h.clock.Now, Monotonic: h.clock.Monotonic, OnChange: h.onChange, Notifier: notifier,
		Holds: h.store.Holds(), ReleasePhase: h.releaser,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.c, h.cancel, h.done = c, cancel, make(chan error, 1)
	go func() { h.done <- c.Run(ctx) }()
	if err := c.waitReady(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// waitFor polls cond until it holds; the test's own timeout bounds it.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	for i := 0; !cond(); i++ {
		if i%200 == 199 {
			h.t.Logf("still waiting for %s", what)
		}
		h.c.Poll()
		time.Sleep(5 * time.Millisecond)
	}
}

// pushMaster moves master and waits until dev has taken the commit to a
// final state.
func (h *harness) pushMaster(commit string) ledger.Deployment {
	h.t.Helper()
	h.repo.setBranch("master", commit)
	var d ledger.Deployment
	h.waitFor("dev to take "+shortHash(commit), func() bool {
		var err error
		d, err = h.store.LatestForCommit(context.Background(), "dev", ledger.KindDeploy, commit)
		return err == nil && d.State.Final() && !h.c.busy("dev")
	})
	return d
}

func (h *harness) waitFinal(id int64) ledger.Deployment {
	h.t.Helper()
	var d ledger.Deployment
	h.waitFor(fmt.Sprintf("deployment %d to end", id), func() bool {
		var err error
		d, err = h.store.Get(context.Background(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		return d.State.Final() && !h.c.busy(d.Env)
	})
	return d
}

func (h *harness) release(commit string) ledger.Deployment {
	h.t.Helper()
	d, err := h.c.Release(context.Background(), ReleaseRequest{Commit: commit})
	if err != nil {
		h.t.Fatalf("Release(%s): %v", shortHash(commit), err)
	}
	return h.waitFinal(d.ID)
}

// busy reports whether env has a rollout in flight.
func (c *Controller) busy(env string) bool {
	_, _, ok := c.rollouts.snapshot(env)
	return ok
}

// flakyStore fails the first failUpdates updates, and the first
// failStarts records of a step, as a locked or full ledger would.
type flakyStore struct {
	Store
	mu          sync.Mutex
	failUpdates int
	failStarts  int
	failures    int
}

func (f *flakyStore) StartStep(ctx context.Context, id int64, name string) (ledger.Step, error) {
	f.mu.Lock()
	if f.failStarts > 0 {
		f.failStarts--
		f.failures++
		f.mu.Unlock()
		return ledger.Step{}, errors.New("database is locked")
	}
	f.mu.Unlock()
	return f.Store.StartStep(ctx, id, name)
}

func (f *flakyStore) Update(ctx context.Context, d *ledger.Deployment) error {
	f.mu.Lock()
	if f.failures < f.failUpdates {
		f.failures++
		f.mu.Unlock()
		return errors.New("database is locked")
	}
	f.mu.Unlock()
	return f.Store.Update(ctx, d)
}

func (f *flakyStore) failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures
}

// notes records the notifications of locks and break-glass.
type notes struct {
	mu   sync.Mutex
	list []string // "kind env: message"
}

func (n *notes) Notify(ctx context.Context, e notify.Event) error {
	switch e.Kind {
	case notify.Locked, notify.Unlocked, notify.BreakGlass:
	default:
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.list = append(n.list, e.Kind+" "+e.Env+": "+e.Message)
	return nil
}

func (n *notes) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.list)
}
