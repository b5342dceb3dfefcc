package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/notify"
)

// checkNotificationSecrets refuses to start when a destination's secretEnv
// names an empty variable: its notifications could not be signed.
func checkNotificationSecrets(configPath string, set *config.Set) error {
	check := func(where string, ns []config.Notification) error {
		for _, n := range ns {
			if n.SecretEnv != "" && os.Getenv(n.SecretEnv) == "" {
				return usageErrorf("%s: %snotification %s: secretEnv names %s, which is empty: set it to the secret the destination checks signatures with, or remove secretEnv", configPath, where, n.Name, n.SecretEnv)
			}
		}
		return nil
	}
	if err := check("", set.Notifications); err != nil {
		return err
	}
	for _, c := range set.Apps {
		if err := check("app "+c.App+": ", c.Notifications); err != nil {
			return err
		}
	}
	return nil
}

// notifyDestinations are the destinations of each app's events: the
// file's top-level notifications, then the app's own.
func notifyDestinations(set *config.Set) notify.Destinations {
	return func(app string) []notify.Destination {
		var out []notify.Destination
		for _, n := range set.Destinations(app) {
			out = append(out, notify.Destination{Name: n.Name, URL: n.URL, Format: n.FormatOrDefault(),
				Events: n.Events, SecretEnv: n.SecretEnv})
		}
		return out
	}
}

// runDeliverer delivers the outbox's notifications until ctx ends; the
// channel closes once the attempts in flight have ended.
func runDeliverer(ctx context.Context, store *ledger.Store, outbox *notify.Outbox, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	d := notify.NewDeliverer(store, outbox.Wakeups(), notify.Options{Logger: log.With("component", "notify")})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("notifications stopped", "err", err)
		}
	}()
	return done
}

// notificationsOptions are the inputs of `slipway notifications`.
type notificationsOptions struct {
	clientOptions
	output outputFlag
	state  string
	limit  int
}

func newNotificationsCommand() *cobra.Command {
	o := &notificationsOptions{}
	cmd := &cobra.Command{
		Use:   "notifications",
		Short: "Show the recent deliveries of notifications (outgoing webhooks)",
		Long: `Shows the newest deliveries of the notifications configured in slipway.yaml
(notifications, docs/configuration.md), newest first: each event once per
destination, with its delivery id, state (pending, delivered, failed), the
attempts made, the last error and, while pending, when the next attempt is.

Every app's, or one app's with --app. With -o json it prints
{"notifications": [...]} as GET /api/v1/notifications answers (docs/api.md).`,
		Example: `  slipway notifications
  slipway notifications --app web --state pending
  slipway notifications --state failed -o json | jq -r '.notifications[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd)
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().StringVar(&o.state, "state", "", "only deliveries in this state: pending, delivered or failed")
	cmd.Flags().IntVar(&o.limit, "limit", 50, "at most this many deliveries (1-10000)")
	return cmd
}

func (o *notificationsOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	switch o.state {
	case "", ledger.NotificationPending, ledger.NotificationDelivered, ledger.NotificationFailed:
	default:
		return usageErrorf("--state %q: give pending, delivered or failed", o.state)
	}
	if o.limit < 1 || o.limit > 10000 {
		return usageErrorf("--limit %d: give a number from 1 to 10000", o.limit)
	}
	return nil
}

func (o *notificationsOptions) run(ctx context.Context, stdout io.Writer) error {
	list, err := o.client.Notifications(ctx, o.app, o.state, o.limit)
	if err != nil {
		return err
	}
	if o.output.json() {
		return writeJSONTo(stdout, struct {
			Notifications []ledger.Notification `json:"notifications"`
		}{list})
	}
	return renderNotifications(stdout, list, time.Now())
}

// renderNotifications writes the text form of `slipway notifications`.
func renderNotifications(w io.Writer, list []ledger.Notification, now time.Time) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "No notifications yet (notifications in slipway.yaml: docs/configuration.md).")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAPP\tEVENT\tDESTINATION\tSTATE\tATTEMPTS\tCREATED\tNEXT ATTEMPT\tLAST ERROR")
	for _, n := range list {
		next := "-"
		if n.State == ledger.NotificationPending && !n.NextAttemptAt.IsZero() {
			next = "now"
			if d := n.NextAttemptAt.Sub(now); d > 0 {
				next = "in " + d.Round(time.Second).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n.DeliveryID, n.App, n.Event, n.Destination, n.State,
			n.Attempts, n.CreatedAt.UTC().Format("2006-01-02 15:04:05"), next, oneLine(n.LastError, 80))
	}
	return tw.Flush()
}

// oneLine is s on one line, cut to at most limit runes; "-" when empty.
func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	if r := []rune(s); len(r) > limit {
		return string(r[:limit-1]) + "…"
	}
	return s
}
