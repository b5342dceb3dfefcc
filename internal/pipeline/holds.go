package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/notify"
)

// This file is what holds an environment back: a lock (slipway lock ENV),
// a freeze window of the configuration, and the pin a rollback of an
// automatic environment leaves. Locked or frozen: automatic deployments
// wait and releases are refused unless forced with a reason (break-glass);
// rollbacks, scales, stops and starts go on. Pinned: the environment stays
// on the version it was rolled back to until its feed moves, or unpin.

// HoldStore keeps an app's locks and pins (the ledger's Holds).
type HoldStore interface {
	PutLock(ctx context.Context, lk *ledger.Lock) error
	DeleteLock(ctx context.Context, env, by string) error
	Locks(ctx context.Context) ([]ledger.Lock, error)
	LockHistory(ctx context.Context, limit int) ([]ledger.Lock, error)
	PutPin(ctx context.Context, p *ledger.Pin) error
	DeletePin(ctx context.Context, env string) error
	Pins(ctx context.Context) ([]ledger.Pin, error)
}

var _ HoldStore = (*ledger.Holds)(nil)

// Kinds of event the controller notifies of here.
const (
	EventLocked     = notify.Locked
	EventUnlocked   = notify.Unlocked
	EventBreakGlass = notify.BreakGlass
)

// LockRequest asks to lock an environment.
type LockRequest struct {
	Env    string
	Reason string
	// By says who asks (the caller, as the API or dashboard knows it).
	By string
}

// HoldError says why an environment held by a lock or a freeze window
// refuses a release; Err is ErrLocked or ErrFrozen.
type HoldError struct {
	Env    string
	Reason string
	Err    error
}

func (e *HoldError) Error() string { return e.Reason }

func (e *HoldError) Unwrap() error { return e.Err }

// Frozen is the freeze window that holds an environment.
type Frozen struct {
	Window string    `json:"window"`
	Until  time.Time `json:"until"`
}

// Waiting is a commit an automatic environment holds back, and why.
type Waiting struct {
	Commit      string `json:"commit"`
	ShortCommit string `json:"shortCommit"`
	Reason      string `json:"reason"`
}

// holds is the controller's copy of its app's locks and pins: the ledger
// has them, the controller reads them once at start and writes both.
type holds struct {
	mu    sync.Mutex // never held across I/O
	locks map[string]ledger.Lock
	pins  map[string]ledger.Pin
}

func (c *Controller) loadHolds(ctx context.Context) error {
	locks, err := c.deps.Holds.Locks(ctx)
	if err != nil {
		return err
	}
	pins, err := c.deps.Holds.Pins(ctx)
	if err != nil {
		return err
	}
	c.holds.mu.Lock()
	defer c.holds.mu.Unlock()
	for _, lk := range locks {
		c.holds.locks[lk.Env] = lk
	}
	for _, p := range pins {
		c.holds.pins[p.Env] = p
	}
	return nil
}

func (c *Controller) lockOf(env string) (ledger.Lock, bool) {
	c.holds.mu.Lock()
	defer c.holds.mu.Unlock()
	lk, ok := c.holds.locks[env]
	return lk, ok
}

func (c *Controller) pinOf(env string) (ledger.Pin, bool) {
	c.holds.mu.Lock()
	defer c.holds.mu.Unlock()
	p, ok := c.holds.pins[env]
	return p, ok
}

// frozen returns the freeze window that holds e now, if any.
func (c *Controller) frozen(e *Env) (Frozen, bool) {
	w, until, ok := e.Freeze.Active(c.now())
	if !ok {
		return Frozen{}, false
	}
	return Frozen{Window: w.Describe(), Until: until}, true
}

// held returns why e takes no automatic deployment and no release now, or
// nil: a lock first, then a freeze window.
func (c *Controller) held(e *Env) *HoldError {
	if lk, ok := c.lockOf(e.Name); ok {
		return &HoldError{Env: e.Name, Err: ErrLocked, Reason: fmt.Sprintf("%s is locked by %s since %s: %s",
			e.Name, lk.By, lk.Since.UTC().Format("2006-01-02 15:04 MST"), lk.Reason)}
	}
	if f, ok := c.frozen(e); ok {
		return &HoldError{Env: e.Name, Err: ErrFrozen, Reason: fmt.Sprintf("%s is frozen (%s) until %s",
			e.Name, f.Window, f.Until.UTC().Format("2006-01-02 15:04 MST"))}
	}
	return nil
}

// Lock locks an environment: its automatic deployments wait and releases
// to it are refused without --force until Unlock. Rollbacks go on.
func (c *Controller) Lock(ctx context.Context, req LockRequest) (ledger.Lock, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Lock{}, err
	}
	e, err := c.env("lock", req.Env)
	if err != nil {
		return ledger.Lock{}, err
	}
	if strings.TrimSpace(req.Reason) == "" {
		return ledger.Lock{}, fmt.Errorf("lock %s: say why with --reason: %w", e.Name, ErrReasonRequired)
	}
	if lk, ok := c.lockOf(e.Name); ok {
		return lk, fmt.Errorf("lock %s: it is locked already by %s since %s (%s); unlock it first to change the reason: %w",
			e.Name, lk.By, lk.Since.UTC().Format("2006-01-02 15:04 MST"), lk.Reason, ErrLocked)
	}
	lk := ledger.Lock{Env: e.Name, Reason: strings.TrimSpace(req.Reason), By: byOrDefault(req.By, "lock command")}
	if err := c.deps.Holds.PutLock(ctx, &lk); err != nil {
		return ledger.Lock{}, err
	}
	c.holds.mu.Lock()
	c.holds.locks[e.Name] = lk
	c.holds.mu.Unlock()
	c.changed()
	c.log.Info("locked", "env", e.Name, "by", lk.By, "reason", lk.Reason)
	c.notify(ctx, EventLocked, e.Name, fmt.Sprintf("%s of %s locked by %s: %s", e.Name, c.cfg.App, lk.By, lk.Reason),
		map[string]string{"by": lk.By, "reason": lk.Reason})
	return lk, nil
}

// Unlock lifts the lock of an environment; what waited goes on.
func (c *Controller) Unlock(ctx context.Context, env, by string) (ledger.Lock, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Lock{}, err
	}
	e, err := c.env("unlock", env)
	if err != nil {
		return ledger.Lock{}, err
	}
	lk, ok := c.lockOf(e.Name)
	if !ok {
		return ledger.Lock{}, fmt.Errorf("unlock %s: it is not locked: %w", e.Name, ErrNotLocked)
	}
	by = byOrDefault(by, "unlock command")
	if err := c.deps.Holds.DeleteLock(ctx, e.Name, by); err != nil {
		return ledger.Lock{}, err
	}
	c.holds.mu.Lock()
	delete(c.holds.locks, e.Name)
	c.holds.mu.Unlock()
	c.changed()
	lk.UnlockedBy, lk.Until = by, c.now().UTC()
	c.log.Info("unlocked", "env", e.Name, "by", by)
	c.notify(ctx, EventUnlocked, e.Name, fmt.Sprintf("%s of %s unlocked by %s (locked since %s: %s)", e.Name, c.cfg.App, by,
		lk.Since.UTC().Format("2006-01-02 15:04 MST"), lk.Reason), map[string]string{"by": by, "lockedBy": lk.By, "reason": lk.Reason})
	c.wake(e.Name)
	return lk, nil
}

// Unpin lets an automatic environment that a rollback pinned take its
// feed's newest commit again.
func (c *Controller) Unpin(ctx context.Context, env, by string) (ledger.Pin, error) {
	if err := c.waitReady(ctx); err != nil {
		return ledger.Pin{}, err
	}
	e, err := c.env("unpin", env)
	if err != nil {
		return ledger.Pin{}, err
	}
	p, ok := c.pinOf(e.Name)
	if !ok {
		return ledger.Pin{}, fmt.Errorf("unpin %s: it is not pinned (only a rollback of an automatic environment pins it): %w", e.Name, ErrNotPinned)
	}
	if err := c.dropPin(ctx, e, "unpinned by "+byOrDefault(by, "unpin command")); err != nil {
		return ledger.Pin{}, err
	}
	// The head seen last is looked at again.
	c.mu.Lock()
	delete(c.lastHead, e.Name)
	c.mu.Unlock()
	c.wake(e.Name)
	return p, nil
}

// Locks returns the locks that hold now and the newest locks, lifted
// ones too (with who lifted them and when), newest first, at most limit.
func (c *Controller) Locks(ctx context.Context, limit int) (held, history []ledger.Lock, err error) {
	if err := c.waitReady(ctx); err != nil {
		return nil, nil, err
	}
	held, err = c.deps.Holds.Locks(ctx)
	if err != nil {
		return nil, nil, err
	}
	history, err = c.deps.Holds.LockHistory(ctx, limit)
	return held, history, err
}

// dropPin removes e's pin from the ledger and the controller.
func (c *Controller) dropPin(ctx context.Context, e *Env, why string) error {
	if err := c.deps.Holds.DeletePin(ctx, e.Name); err != nil {
		return err
	}
	c.holds.mu.Lock()
	delete(c.holds.pins, e.Name)
	c.holds.mu.Unlock()
	c.changed()
	c.log.Info("pin released", "env", e.Name, "why", why)
	return nil
}

// keepPinned reports whether e is pinned against feed, the commit its feed
// offers now (its branch's head, or what the environment it is fed from
// runs). A feed that moved away from the pin's head releases the pin.
func (c *Controller) keepPinned(ctx context.Context, e *Env, feed string) bool {
	p, ok := c.pinOf(e.Name)
	if !ok {
		return false
	}
	if feed == "" || feed == p.Head {
		return true
	}
	if err := c.dropPin(ctx, e, fmt.Sprintf("its feed moved from %s to %s", shortHash(p.Head), shortHash(feed))); err != nil {
		c.log.Warn("release the pin", "env", e.Name, "err", err)
		return true // the next poll tries again
	}
	return false
}

// feedOf is the commit e's feed offers now: the head of its branch, or
// what the environment it is fed from runs.
func (c *Controller) feedOf(ctx context.Context, e *Env) (string, error) {
	if e.From == "" {
		return c.deps.Repo.Head(ctx, e.Branch)
	}
	up, err := c.deps.Store.Current(ctx, e.From)
	if errors.Is(err, ledger.ErrNoDeployment) {
		return "", nil
	}
	return up.Commit, err
}

// pin keeps e on d, the rollback being recorded, from cur.
func (c *Controller) pin(ctx context.Context, e *Env, d *ledger.Deployment, cur ledger.Deployment, by string) error {
	feed, err := c.feedOf(ctx, e)
	if err != nil {
		return fmt.Errorf("pin %s on %s: read its feed: %w", e.Name, shortHash(d.Commit), err)
	}
	p := ledger.Pin{Env: e.Name, Commit: d.Commit, From: cur.Commit, Head: feed, DeploymentID: d.ID, By: by}
	if err := c.deps.Holds.PutPin(ctx, &p); err != nil {
		return err
	}
	c.holds.mu.Lock()
	c.holds.pins[e.Name] = p
	c.holds.mu.Unlock()
	c.changed()
	return nil
}

// admit says what an automatic environment does with commit now: "" to
// deploy it, else why it waits (wait) or drops it (pinned to another).
func (c *Controller) admit(e *Env, commit string) (reason string, wait bool) {
	if p, ok := c.pinOf(e.Name); ok && p.Commit != commit {
		return fmt.Sprintf("%s is pinned on %s by a rollback", e.Name, shortHash(p.Commit)), false
	}
	if h := c.held(e); h != nil {
		return h.Reason, true
	}
	return "", true
}

// wake makes env's worker look at its queue again, and the controller
// poll.
func (c *Controller) wake(env string) {
	if q := c.queues[env]; q != nil {
		q.signal()
	}
	c.Poll()
}

// wakeWaiting wakes the workers holding a commit back, so that one whose
// lock or freeze window ended goes on.
func (c *Controller) wakeWaiting() {
	for _, q := range c.queues {
		if q.waiting() != "" {
			q.signal()
		}
	}
}

// changed counts a change of the holds as a ledger write (the poll looks
// again, and the dashboard is told).
func (c *Controller) changed() {
	c.writes.Add(1)
	if c.deps.OnChange != nil {
		c.deps.OnChange()
	}
}

// notify records an event of a hold for the app's notifications: msg is
// the sentence people read; fields carry who (by), why (reason) and what
// (commit, release).
func (c *Controller) notify(ctx context.Context, kind, env, msg string, fields map[string]string) {
	c.Notify(ctx, notify.Event{Kind: kind, Env: env, Message: msg, Actor: fields["by"], Reason: fields["reason"],
		Commit: fields["commit"], Release: fields["release"]})
}

func byOrDefault(by, def string) string {
	if by = strings.TrimSpace(by); by != "" {
		return by
	}
	return def
}

// holdStatus fills in what holds es's environment back.
func (c *Controller) holdStatus(e *Env, es *EnvStatus) {
	if lk, ok := c.lockOf(e.Name); ok {
		es.Locked = &lk
	}
	if f, ok := c.frozen(e); ok {
		es.Frozen = &f
	}
	if p, ok := c.pinOf(e.Name); ok {
		es.Pinned = &p
	}
	q := c.queues[e.Name]
	if q == nil {
		return
	}
	if commit := q.waiting(); commit != "" {
		if reason, wait := c.admit(e, commit); reason != "" && wait {
			es.Waiting = &Waiting{Commit: commit, ShortCommit: shortHash(commit), Reason: reason}
		}
	}
}

// memHolds keeps holds in memory, for a controller given no HoldStore.
type memHolds struct {
	mu    sync.Mutex
	locks map[string]ledger.Lock
	pins  map[string]ledger.Pin
}

func newMemHolds() *memHolds {
	return &memHolds{locks: map[string]ledger.Lock{}, pins: map[string]ledger.Pin{}}
}

func (m *memHolds) PutLock(ctx context.Context, lk *ledger.Lock) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if lk.Since.IsZero() {
		lk.Since = time.Now().UTC()
	}
	m.locks[lk.Env] = *lk
	return nil
}

func (m *memHolds) DeleteLock(ctx context.Context, env, by string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.locks, env)
	return nil
}

func (m *memHolds) Locks(ctx context.Context) ([]ledger.Lock, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ledger.Lock
	for _, lk := range m.locks {
		out = append(out, lk)
	}
	return out, nil
}

func (m *memHolds) LockHistory(ctx context.Context, limit int) ([]ledger.Lock, error) {
	return m.Locks(ctx)
}

func (m *memHolds) PutPin(ctx context.Context, p *ledger.Pin) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.Since.IsZero() {
		p.Since = time.Now().UTC()
	}
	m.pins[p.Env] = *p
	return nil
}

func (m *memHolds) DeletePin(ctx context.Context, env string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pins, env)
	return nil
}

func (m *memHolds) Pins(ctx context.Context) ([]ledger.Pin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ledger.Pin
	for _, p := range m.pins {
		out = append(out, p)
	}
	return out, nil
}
