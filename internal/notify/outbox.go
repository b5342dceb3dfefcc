package notify

import (
	"context"
	"fmt"
	"slices"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// Destination is where events are posted: one entry of notifications in
// slipway.yaml.
type Destination struct {
	// Name identifies it among the app's destinations.
	Name string
	// URL is posted to.
	URL string
	// Format is FormatJSON (also when empty) or FormatSlack.
	Format string
	// Events are the event kinds it gets; empty: every one.
	Events []string
	// SecretEnv names the environment variable holding the signing
	// secret; empty: unsigned.
	SecretEnv string
}

// Destinations returns the destinations of an app's events.
type Destinations func(app string) []Destination

// wants reports whether d gets events of kind.
func (d Destination) wants(kind string) bool {
	return len(d.Events) == 0 || slices.Contains(d.Events, kind)
}

// Outbox records events in the ledger for the Deliverer.
type Outbox struct {
	store *ledger.Store
	dests Destinations
	now   func() time.Time
	wake  chan struct{}
}

var _ Notifier = (*Outbox)(nil)

// NewOutbox returns the outbox of store, sending each app's events to
// dests(app).
func NewOutbox(store *ledger.Store, dests Destinations) *Outbox {
	return &Outbox{store: store, dests: dests, now: store.Now, wake: make(chan struct{}, 1)}
}

// Wakeups receives after each write to the outbox: the Deliverer sends at
// once instead of at its next due time.
func (o *Outbox) Wakeups() <-chan struct{} { return o.wake }

// Notify writes one row per destination of e.App that asks for e.Kind, in
// one transaction, and returns without waiting for delivery; rows of an
// e.Key written before are not written again. An error means nothing was
// written.
func (o *Outbox) Notify(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = o.now()
	}
	e.Time = e.Time.UTC()
	var rows []ledger.Notification
	for _, d := range o.dests(e.App) {
		if !d.wants(e.Kind) {
			continue
		}
		n, err := newRow(d, e, o.now())
		if err != nil {
			return err
		}
		rows = append(rows, n)
	}
	if err := o.store.AddNotifications(ctx, rows); err != nil {
		return fmt.Errorf("notify %s of %s: %w", e.Kind, e.App, err)
	}
	if len(rows) > 0 {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// newRow is the outbox row of e for destination d, written at at.
func newRow(d Destination, e Event, at time.Time) (ledger.Notification, error) {
	id, err := deliveryID(e.Key, ledger.DestinationKey(e.App, d.Name))
	if err != nil {
		return ledger.Notification{}, err
	}
	format := d.Format
	if format != FormatSlack {
		format = FormatJSON
	}
	body, err := render(format, id, e)
	if err != nil {
		return ledger.Notification{}, err
	}
	return ledger.Notification{
		DeliveryID: id, App: e.App, Event: e.Kind, Destination: d.Name, URL: d.URL,
		Format: format, SecretEnv: d.SecretEnv, Body: body, CreatedAt: at,
	}, nil
}
