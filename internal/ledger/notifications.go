package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Notification states.
const (
	// NotificationPending is waiting for its next attempt (or in one).
	NotificationPending = "pending"
	// NotificationDelivered got a 2xx answer.
	NotificationDelivered = "delivered"
	// NotificationFailed was given up after its last attempt.
	NotificationFailed = "failed"
)

// Notification is one event for one destination in the outbox. Its JSON
// form is part of slipway's documented output (slipway notifications -o
// json, GET /api/v1/notifications); the URL, secret and body stay in the
// ledger.
type Notification struct {
	ID          int64  `json:"-"`
	DeliveryID  string `json:"id"`
	App         string `json:"app"`
	Event       string `json:"event"`
	Destination string `json:"destination"`
	URL         string `json:"-"`
	Format      string `json:"format"`
	SecretEnv   string `json:"-"`
	Body        []byte `json:"-"`
	State       string `json:"state"`
	Attempts    int    `json:"attempts"`
	LastError   string `json:"lastError,omitempty"`

	CreatedAt     time.Time `json:"created"`
	NextAttemptAt time.Time `json:"nextAttempt,omitzero"` // pending rows only
	SendingSince  time.Time `json:"-"`
	LastAttemptAt time.Time `json:"lastAttempt,omitzero"`
	DeliveredAt   time.Time `json:"delivered,omitzero"`
}

const notificationColumns = `id, delivery_id, app, event, destination, url, format, secret_env, body, state,
	attempts, last_error, created_at, next_attempt_at, sending_since, last_attempt_at, delivered_at`

func scanNotification(r rowScanner) (Notification, error) {
	var n Notification
	var body string
	times := make([]string, 5)
	err := r.Scan(&n.ID, &n.DeliveryID, &n.App, &n.Event, &n.Destination, &n.URL, &n.Format, &n.SecretEnv, &body,
		&n.State, &n.Attempts, &n.LastError, &times[0], &times[1], &times[2], &times[3], &times[4])
	if err != nil {
		return n, err
	}
	n.Body = []byte(body)
	for i, p := range []*time.Time{&n.CreatedAt, &n.NextAttemptAt, &n.SendingSince, &n.LastAttemptAt, &n.DeliveredAt} {
		if *p, err = parseTime(times[i]); err != nil {
			return n, err
		}
	}
	if n.State != NotificationPending {
		n.NextAttemptAt = time.Time{}
	}
	return n, nil
}

// AddNotifications writes ns to the outbox in one transaction, pending
// and due at their NextAttemptAt (CreatedAt when zero; a zero CreatedAt is
// stamped with the store's clock), and sets their IDs. A row whose
// DeliveryID is in the outbox already is left out (its ID stays 0).
func (s *Store) AddNotifications(ctx context.Context, ns []Notification) error {
	if len(ns) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record notifications: %w", err)
	}
	defer tx.Rollback()
	for i := range ns {
		if err := s.addNotification(ctx, tx, &ns[i]); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record notifications: %w", err)
	}
	return nil
}

func (s *Store) addNotification(ctx context.Context, tx *sql.Tx, n *Notification) error {
	if n.CreatedAt.IsZero() {
		n.CreatedAt = s.now()
	}
	if n.NextAttemptAt.IsZero() {
		n.NextAttemptAt = n.CreatedAt
	}
	n.State = NotificationPending
	err := tx.QueryRowContext(ctx, `INSERT INTO notifications (delivery_id, app, event, destination, url, format,
		secret_env, body, state, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (delivery_id) DO NOTHING RETURNING id`,
		n.DeliveryID, n.App, n.Event, n.Destination, n.URL, n.Format, n.SecretEnv, string(n.Body), n.State,
		formatTime(n.CreatedAt), formatTime(n.NextAttemptAt)).Scan(&n.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // written before, with its delivery id: ID stays 0
	}
	if err != nil {
		return fmt.Errorf("record %s notification for %s: %w", n.Event, n.Destination, err)
	}
	return nil
}

// DueNotifications returns at most limit pending notifications due at now
// and not being sent, the longest due first, leaving out those of the
// destinations in skip (DestinationKey).
func (s *Store) DueNotifications(ctx context.Context, now time.Time, limit int, skip ...string) ([]Notification, error) {
	not, args := skipDestinations(skip)
	args = append([]any{NotificationPending, formatTime(now)}, append(args, limit)...)
	return queryAll(ctx, s.db, "list the notifications due", scanNotification,
		`SELECT `+notificationColumns+` FROM notifications
		WHERE state = ? AND next_attempt_at <= ? AND sending_since = ''`+not+`
		ORDER BY next_attempt_at, id LIMIT ?`, args...)
}

// NextNotificationDue returns when the next pending notification not being
// sent is due, leaving out the destinations in skip, and false when there
// is none.
func (s *Store) NextNotificationDue(ctx context.Context, skip ...string) (time.Time, bool, error) {
	not, args := skipDestinations(skip)
	var next sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM notifications
		WHERE state = ? AND sending_since = ''`+not, append([]any{NotificationPending}, args...)...).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find the next notification due: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	t, err := parseTime(next.String)
	return t, err == nil, err
}

// DestinationKey names a notification's destination among every app's:
// APP/NAME.
func DestinationKey(app, destination string) string { return app + "/" + destination }

// skipDestinations is the condition leaving out the destinations of skip,
// and its arguments.
func skipDestinations(skip []string) (string, []any) {
	if len(skip) == 0 {
		return "", nil
	}
	args := make([]any, len(skip))
	for i, k := range skip {
		args[i] = k
	}
	return ` AND app || '/' || destination NOT IN (?` + strings.Repeat(", ?", len(skip)-1) + `)`, args
}

// ClaimNotification marks n as being sent, at its attempt n.Attempts+1.
// It reports false when another attempt took it first (its attempts or
// state changed since it was read).
func (s *Store) ClaimNotification(ctx context.Context, n *Notification, at time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE notifications SET attempts = attempts + 1, sending_since = ?, last_attempt_at = ?
		WHERE id = ? AND state = ? AND attempts = ? AND sending_since = ''`,
		formatTime(at), formatTime(at), n.ID, NotificationPending, n.Attempts)
	if err != nil {
		return false, fmt.Errorf("claim notification %s: %w", n.DeliveryID, err)
	}
	k, err := res.RowsAffected()
	if err != nil || k == 0 {
		return false, err
	}
	n.Attempts++
	n.SendingSince, n.LastAttemptAt = at, at
	return true, nil
}

// FinishNotificationAttempt records the outcome of n's attempt: n.State
// (delivered, failed, or pending again, due at n.NextAttemptAt) and
// n.LastError.
func (s *Store) FinishNotificationAttempt(ctx context.Context, n *Notification) error {
	_, err := s.db.ExecContext(ctx, `UPDATE notifications SET state = ?, last_error = ?, next_attempt_at = ?,
		delivered_at = ?, sending_since = '' WHERE id = ?`,
		n.State, n.LastError, formatTime(n.NextAttemptAt), formatTime(n.DeliveredAt), n.ID)
	if err != nil {
		return fmt.Errorf("record the attempt of notification %s: %w", n.DeliveryID, err)
	}
	n.SendingSince = time.Time{}
	return nil
}

// ResumeNotifications makes the notifications whose attempt was in flight
// when slipway stopped (killed, or shut down mid-attempt) due at now, and
// returns how many there were. Call it at start, before delivering: they
// are sent again with the same delivery id.
func (s *Store) ResumeNotifications(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE notifications SET sending_since = '', next_attempt_at = ?
		WHERE state = ? AND sending_since <> ''`, formatTime(now), NotificationPending)
	if err != nil {
		return 0, fmt.Errorf("take up the notifications interrupted by a stop: %w", err)
	}
	k, err := res.RowsAffected()
	return int(k), err
}

// NotificationFilter selects notifications: of an app ("" for every app),
// in a state ("" for any), the newest Limit.
type NotificationFilter struct {
	App   string
	State string
	Limit int
}

// Notifications returns the notifications f selects, newest first.
func (s *Store) Notifications(ctx context.Context, f NotificationFilter) ([]Notification, error) {
	q := `SELECT ` + notificationColumns + ` FROM notifications WHERE (? = '' OR app = ?) AND (? = '' OR state = ?)
		ORDER BY id DESC LIMIT ?`
	return queryAll(ctx, s.db, "list the notifications", scanNotification, q, f.App, f.App, f.State, f.State, max(f.Limit, 1))
}

// NotificationByDeliveryID returns the notification of a delivery id.
func (s *Store) NotificationByDeliveryID(ctx context.Context, id string) (Notification, error) {
	n, err := scanNotification(s.db.QueryRowContext(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE delivery_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("notification %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return n, fmt.Errorf("read notification %s: %w", id, err)
	}
	return n, nil
}
