package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Lock is an environment locked by a person (slipway lock ENV): automatic
// deployments wait and releases are refused until it is unlocked.
type Lock struct {
	Env    string    `json:"env"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	Since  time.Time `json:"since"`
	// UnlockedBy and Until say who lifted the lock and when (LockHistory);
	// empty while it holds.
	UnlockedBy string    `json:"unlockedBy,omitempty"`
	Until      time.Time `json:"until,omitzero"`
}

// Pin keeps an automatic environment on the version a rollback put it on:
// Commit, rolled back from From, while its feed (its branch's head, or what
// the environment it is fed from runs) is still Head.
type Pin struct {
	Env          string    `json:"env"`
	Commit       string    `json:"commit"`
	From         string    `json:"from"`
	Head         string    `json:"head"`
	DeploymentID int64     `json:"deploymentId"`
	By           string    `json:"by"`
	Since        time.Time `json:"since"`
}

// Holds reads and writes the locks and pins of one app (migration 0206).
type Holds struct {
	db  *sql.DB
	now func() time.Time
	app string
}

// Holds returns the locks and pins of the app l is scoped to (ForApp);
// rows of no app when it is not scoped.
func (l *Deployments) Holds() *Holds { return &Holds{db: l.db, now: l.now, app: l.app} }

// PutLock locks env, replacing (unlocking) a lock it had; a zero Since is
// stamped now.
func (h *Holds) PutLock(ctx context.Context, lk *Lock) error {
	if lk.Since.IsZero() {
		lk.Since = h.now().UTC()
	}
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record the lock of %s: %w", lk.Env, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE locks SET unlocked_by = ?, unlocked_at = ? WHERE app = ? AND env = ? AND unlocked_at = ''`,
		"replaced by "+lk.By, formatTime(lk.Since), h.app, lk.Env); err != nil {
		return fmt.Errorf("record the lock of %s: %w", lk.Env, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO locks (app, env, reason, locked_by, locked_at) VALUES (?, ?, ?, ?, ?)`,
		h.app, lk.Env, lk.Reason, lk.By, formatTime(lk.Since)); err != nil {
		return fmt.Errorf("record the lock of %s: %w", lk.Env, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record the lock of %s: %w", lk.Env, err)
	}
	return nil
}

// DeleteLock unlocks env, recording who did and when; unlocking an
// environment that is not locked does nothing.
func (h *Holds) DeleteLock(ctx context.Context, env, by string) error {
	if _, err := h.db.ExecContext(ctx, `UPDATE locks SET unlocked_by = ?, unlocked_at = ? WHERE app = ? AND env = ? AND unlocked_at = ''`,
		by, formatTime(h.now().UTC()), h.app, env); err != nil {
		return fmt.Errorf("record the unlock of %s: %w", env, err)
	}
	return nil
}

// Locks returns the app's locks that hold, by environment.
func (h *Holds) Locks(ctx context.Context) ([]Lock, error) {
	return h.locks(ctx, `unlocked_at = ''`, `ORDER BY env`)
}

// LockHistory returns the app's newest locks, those lifted too (Until
// set), newest first, at most limit.
func (h *Holds) LockHistory(ctx context.Context, limit int) ([]Lock, error) {
	return h.locks(ctx, `1 = 1`, `ORDER BY id DESC LIMIT ?`, limit)
}

func (h *Holds) locks(ctx context.Context, cond, order string, args ...any) ([]Lock, error) {
	return queryAll(ctx, h.db, "read the locks", func(r rowScanner) (lk Lock, err error) {
		var since, until string
		if err := r.Scan(&lk.Env, &lk.Reason, &lk.By, &since, &lk.UnlockedBy, &until); err != nil {
			return lk, err
		}
		if lk.Since, err = parseTime(since); err != nil {
			return lk, err
		}
		lk.Until, err = parseTime(until)
		return lk, err
	}, `SELECT env, reason, locked_by, locked_at, unlocked_by, unlocked_at FROM locks WHERE app = ? AND `+cond+` `+order,
		append([]any{h.app}, args...)...)
}

// PutPin pins env, replacing a pin it had; a zero Since is stamped now.
func (h *Holds) PutPin(ctx context.Context, p *Pin) error {
	if p.Since.IsZero() {
		p.Since = h.now().UTC()
	}
	_, err := h.db.ExecContext(ctx, `INSERT INTO pins (app, env, commit_sha, from_commit, head, deployment_id, pinned_by, pinned_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app, env) DO UPDATE SET commit_sha = excluded.commit_sha, from_commit = excluded.from_commit,
			head = excluded.head, deployment_id = excluded.deployment_id, pinned_by = excluded.pinned_by, pinned_at = excluded.pinned_at`,
		h.app, p.Env, p.Commit, p.From, p.Head, p.DeploymentID, p.By, formatTime(p.Since))
	if err != nil {
		return fmt.Errorf("record the pin of %s on %s: %w", p.Env, deployShort(p.Commit), err)
	}
	return nil
}

// DeletePin unpins env; unpinning an environment that is not pinned does
// nothing.
func (h *Holds) DeletePin(ctx context.Context, env string) error {
	if _, err := h.db.ExecContext(ctx, `DELETE FROM pins WHERE app = ? AND env = ?`, h.app, env); err != nil {
		return fmt.Errorf("remove the pin of %s: %w", env, err)
	}
	return nil
}

// Pins returns the app's pins, by environment.
func (h *Holds) Pins(ctx context.Context) ([]Pin, error) {
	return queryAll(ctx, h.db, "read the pins", func(r rowScanner) (p Pin, err error) {
		var since string
		if err := r.Scan(&p.Env, &p.Commit, &p.From, &p.Head, &p.DeploymentID, &p.By, &since); err != nil {
			return p, err
		}
		p.Since, err = parseTime(since)
		return p, err
	}, `SELECT env, commit_sha, from_commit, head, deployment_id, pinned_by, pinned_at FROM pins WHERE app = ? ORDER BY env`, h.app)
}
