package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/ledger"
)

// Defaults of a Deliverer's Options.
const (
	DefaultFirstBackoff   = time.Second
	DefaultMaxBackoff     = 10 * time.Minute
	DefaultGiveUpAfter    = 24 * time.Hour
	DefaultAttemptTimeout = 10 * time.Second
	DefaultConcurrency    = 4
)

// Options tune a Deliverer; zero fields take the defaults above.
type Options struct {
	// FirstBackoff is the wait after a first failed attempt; each further
	// failure doubles it, up to MaxBackoff.
	FirstBackoff, MaxBackoff time.Duration
	// GiveUpAfter: a row that fails an attempt this long after it was
	// written is marked failed for good.
	GiveUpAfter time.Duration
	// AttemptTimeout bounds each attempt, answer included.
	AttemptTimeout time.Duration
	// Concurrency is how many attempts run at once; PerDestination how
	// many of them may go to one destination (default half of them, at
	// least one), so that a slow destination never holds up the others.
	Concurrency, PerDestination int
	// Client posts the notifications; nil: a client of its own.
	Client *http.Client
	// Secret returns the value of an environment variable; nil: os.Getenv.
	Secret func(name string) string
	// Now is the clock; nil: the store's.
	Now    func() time.Time
	Logger *slog.Logger
}

func (o *Options) complete(store *ledger.Store) {
	o.FirstBackoff = cmpOr(o.FirstBackoff, DefaultFirstBackoff)
	o.MaxBackoff = cmpOr(o.MaxBackoff, DefaultMaxBackoff)
	o.GiveUpAfter = cmpOr(o.GiveUpAfter, DefaultGiveUpAfter)
	o.AttemptTimeout = cmpOr(o.AttemptTimeout, DefaultAttemptTimeout)
	o.Concurrency = cmpOr(o.Concurrency, DefaultConcurrency)
	o.PerDestination = min(cmpOr(o.PerDestination, max(1, o.Concurrency/2)), o.Concurrency)
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Secret == nil {
		o.Secret = os.Getenv
	}
	if o.Now == nil {
		o.Now = store.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Deliverer posts the outbox's rows to their destinations.
type Deliverer struct {
	store *ledger.Store
	wake  <-chan struct{}
	opt   Options

	mu   sync.Mutex
	busy map[string]int // destination (ledger.DestinationKey) → attempts in flight
}

// NewDeliverer returns a Deliverer of store's outbox; wake (an Outbox's
// Wakeups, or nil) makes it look for new rows at once.
func NewDeliverer(store *ledger.Store, wake <-chan struct{}, opt Options) *Deliverer {
	opt.complete(store)
	return &Deliverer{store: store, wake: wake, opt: opt, busy: map[string]int{}}
}

// Run delivers until ctx ends, then waits for the attempts in flight to
// end; those interrupted are sent again at the next start. A ledger that
// fails is tried again. It returns ctx's error.
func (d *Deliverer) Run(ctx context.Context) error {
	if err := d.resume(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, d.opt.Concurrency)
	done := make(chan struct{}, 1) // an attempt ended: a slot is free
	for {
		derr := d.dispatch(ctx, &wg, slots, done)
		wait, err := d.untilNext(ctx, len(slots) == cap(slots))
		if err := errors.Join(derr, err); err != nil && ctx.Err() == nil {
			// The ledger fails: look again after a while, not at once.
			d.opt.Logger.Error("read the notifications outbox", "err", err)
			wait = d.opt.FirstBackoff
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-d.wake:
		case <-done:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// resume makes the rows interrupted by the last stop due now, trying
// again while the ledger fails, until ctx ends.
func (d *Deliverer) resume(ctx context.Context) error {
	backoff := d.opt.FirstBackoff
	for {
		k, err := d.store.ResumeNotifications(ctx, d.opt.Now())
		if err == nil {
			if k > 0 {
				d.opt.Logger.Info("sending again the notifications interrupted by the last stop", "count", k)
			}
			return nil
		}
		d.opt.Logger.Error("read the notifications outbox, trying again", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// dispatch starts an attempt for each due row, as many as free slots,
// at most PerDestination at once for one destination.
func (d *Deliverer) dispatch(ctx context.Context, wg *sync.WaitGroup, slots, done chan struct{}) error {
	free := cap(slots) - len(slots)
	if free == 0 {
		return nil
	}
	rows, err := d.store.DueNotifications(ctx, d.opt.Now(), free*d.opt.PerDestination, d.saturated()...)
	if err != nil {
		return err
	}
	for _, n := range rows {
		if len(slots) == cap(slots) {
			break
		}
		key := ledger.DestinationKey(n.App, n.Destination)
		if !d.take(key) {
			continue
		}
		ok, err := d.store.ClaimNotification(ctx, &n, d.opt.Now())
		if err != nil || !ok {
			d.release(key)
			if err != nil {
				return err
			}
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				d.release(key)
				<-slots
				select {
				case done <- struct{}{}:
				default:
				}
			}()
			d.attempt(ctx, n)
		}()
	}
	return nil
}

// take counts an attempt to destination key in flight, unless it has
// PerDestination already.
func (d *Deliverer) take(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy[key] >= d.opt.PerDestination {
		return false
	}
	d.busy[key]++
	return true
}

// release counts an attempt to destination key ended.
func (d *Deliverer) release(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy[key]--; d.busy[key] <= 0 {
		delete(d.busy, key)
	}
}

// saturated returns the destinations with PerDestination attempts in
// flight.
func (d *Deliverer) saturated() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys []string
	for k, n := range d.busy {
		if n >= d.opt.PerDestination {
			keys = append(keys, k)
		}
	}
	return keys
}

// untilNext is how long to wait before looking again: until the next row
// is due (a minute at most: rows may come from elsewhere), or, while every
// slot is busy, until one is free.
func (d *Deliverer) untilNext(ctx context.Context, full bool) (time.Duration, error) {
	const idle = time.Minute
	if full {
		return idle, nil
	}
	next, ok, err := d.store.NextNotificationDue(ctx, d.saturated()...)
	if err != nil || !ok {
		return idle, err
	}
	return min(max(next.Sub(d.opt.Now()), 0), idle), nil
}

// DeliverDue makes one attempt at every row due now, at most Concurrency
// at once, and returns when they end. Run does the same continuously;
// DeliverDue is for tests that drive the clock, and for tools.
func (d *Deliverer) DeliverDue(ctx context.Context) error {
	if _, err := d.store.ResumeNotifications(ctx, d.opt.Now()); err != nil {
		return err
	}
	for {
		rows, err := d.store.DueNotifications(ctx, d.opt.Now(), 1000)
		if err != nil || len(rows) == 0 {
			return err
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, d.opt.Concurrency)
		for _, n := range rows {
			ok, err := d.store.ClaimNotification(ctx, &n, d.opt.Now())
			if err != nil {
				wg.Wait()
				return err
			}
			if !ok {
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				d.attempt(ctx, n)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// attempt posts n once and records the outcome. An attempt cut short by
// ctx is not recorded: the row stays claimed, and the next start sends it
// again.
func (d *Deliverer) attempt(ctx context.Context, n ledger.Notification) {
	err := d.post(ctx, n)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		crashpoint.Hit("notify.delivered")
	}
	now := d.opt.Now()
	d.outcome(&n, err, now)
	log := d.opt.Logger.With("delivery", n.DeliveryID, "event", n.Event, "destination", n.Destination, "app", n.App, "attempt", n.Attempts)
	switch n.State {
	case ledger.NotificationDelivered:
		log.Debug("notification delivered")
	case ledger.NotificationFailed:
		log.Error("notification given up", "err", err)
	default:
		log.Warn("notification not delivered, trying again", "in", n.NextAttemptAt.Sub(now).Round(time.Second), "err", err)
	}
	// The record must not be lost with a shutdown that comes meanwhile.
	if werr := d.store.FinishNotificationAttempt(context.WithoutCancel(ctx), &n); werr != nil {
		log.Error("record a notification's attempt; it is sent again at the next start", "err", werr)
	}
}

// outcome sets n's state after an attempt that ended at now with err.
func (d *Deliverer) outcome(n *ledger.Notification, err error, now time.Time) {
	if err == nil {
		n.State, n.LastError, n.DeliveredAt = ledger.NotificationDelivered, "", now
		return
	}
	n.LastError = err.Error()
	if now.Sub(n.CreatedAt) >= d.opt.GiveUpAfter {
		n.State = ledger.NotificationFailed
		n.LastError = fmt.Sprintf("given up after %d attempts over %s: %s", n.Attempts, d.opt.GiveUpAfter, n.LastError)
		return
	}
	n.State, n.NextAttemptAt = ledger.NotificationPending, now.Add(Backoff(n.Attempts, d.opt.FirstBackoff, d.opt.MaxBackoff))
}

// Backoff is the wait after the attempts-th failed attempt: first,
// doubling at each further one, at most limit.
func Backoff(attempts int, first, limit time.Duration) time.Duration {
	b := first
	for i := 1; i < attempts && b < limit; i++ {
		b *= 2
	}
	return min(b, limit)
}

// ErrNoSecret is an attempt's error when the destination's secretEnv is
// empty: the row waits rather than go out unsigned.
var ErrNoSecret = errors.New("the secret's environment variable is empty")

// post sends n's body to its destination; nil means it answered 2xx.
func (d *Deliverer) post(ctx context.Context, n ledger.Notification) error {
	ctx, cancel := context.WithTimeout(ctx, d.opt.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(n.Body))
	if err != nil {
		return fmt.Errorf("post to %s: %w", redact(n.URL), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "slipway")
	req.Header.Set(HeaderDelivery, n.DeliveryID)
	req.Header.Set(HeaderEvent, n.Event)
	req.Header.Set(HeaderAttempt, strconv.Itoa(n.Attempts))
	if n.SecretEnv != "" {
		secret := d.opt.Secret(n.SecretEnv)
		if secret == "" {
			return fmt.Errorf("sign for %s: %s: %w; set it to the destination's secret", n.Destination, n.SecretEnv, ErrNoSecret)
		}
		req.Header.Set(HeaderSignature, Sign([]byte(secret), n.Body))
	}
	resp, err := d.opt.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("post to %s: no answer within %s", redact(n.URL), d.opt.AttemptTimeout)
		}
		return fmt.Errorf("post to %s: %w", redact(n.URL), err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		msg := strings.Join(strings.Fields(string(snippet)), " ")
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if msg != "" {
			msg = ": " + msg
		}
		return fmt.Errorf("post to %s: %s%s", redact(n.URL), resp.Status, msg)
	}
	return nil
}

// redact hides what a webhook URL may carry as a credential: user, path
// (Slack's token is in it) and query.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "the destination"
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/…"
	}
	return s
}
