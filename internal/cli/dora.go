package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/dora"
)

// doraOptions are the inputs of `slipway dora`.
type doraOptions struct {
	clientOptions
	output outputFlag
	since  string
}

func newDORACommand() *cobra.Command {
	o := &doraOptions{}
	cmd := &cobra.Command{
		Use:   "dora",
		Short: "Show the four DORA delivery metrics of each app",
		Long: `Shows, for each app and for all of them together, the four DORA metrics of
its final environment over a window (default 30 days): deployment frequency,
lead time for changes (median and 90th percentile), change failure rate and
time to restore (median and 90th percentile). docs/dora.md defines each one.

With --app, only that app. With -o json it prints the report described in
docs/api.md: one app's report with --app, else {"all": {...}, "apps": [...]}.`,
		Example: `  slipway dora
  slipway dora --since 7d
  slipway dora --app web --since 90d -o json | jq .changeFailureRate`,
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
	cmd.Flags().StringVar(&o.since, "since", api.DefaultDORAWindow, "the window: days such as 7d, 30d, 90d, or a duration such as 36h")
	return cmd
}

func (o *doraOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if _, err := dora.ParseWindow(o.since); err != nil {
		return usageErrorf("--since %q: give a number of days such as 7d, 30d or 90d, or a duration such as 36h (at least 1m, at most %dd)",
			o.since, dora.MaxWindow/dora.Day)
	}
	return nil
}

func (o *doraOptions) run(ctx context.Context, stdout io.Writer) error {
	if o.app != "" {
		rep, err := o.client.DORA(ctx, o.app, o.since)
		if err != nil {
			return err
		}
		if o.output.json() {
			return writeJSONTo(stdout, rep)
		}
		return renderDORA(stdout, []dora.Report{rep}, nil)
	}
	reps, err := o.client.DORAAll(ctx, o.since)
	if err != nil {
		return err
	}
	if o.output.json() {
		return writeJSONTo(stdout, reps)
	}
	return renderDORA(stdout, reps.Apps, &reps.All)
}

// renderDORA writes the text form of `slipway dora`: a line saying the
// window, then one row per app and, when all is not nil, one for every
// app together.
func renderDORA(w io.Writer, reps []dora.Report, all *dora.Report) error {
	first := all
	if first == nil && len(reps) > 0 {
		first = &reps[0]
	}
	if first != nil {
		fmt.Fprintf(w, "Last %s (%s to %s UTC), on each app's final environment:\n\n", first.Window,
			first.Since.UTC().Format("2006-01-02 15:04"), first.Until.UTC().Format("2006-01-02 15:04"))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tDEPLOYMENTS\tPER DAY\tLEAD TIME (MEDIAN / P90)\tCHANGE FAILURE RATE\tTIME TO RESTORE (MEDIAN / P90)")
	rows := reps
	if all != nil {
		a := *all
		a.App = "(all)"
		rows = append(rows[:len(rows):len(rows)], a)
	}
	var notes []string
	for _, r := range rows {
		lead, restore, rate := "-", "-", "-"
		if r.LeadTimes > 0 {
			lead = span(r.LeadTimeMedian) + " / " + span(r.LeadTimeP90)
		}
		if r.Restores > 0 {
			restore = span(r.TimeToRestoreMedian) + " / " + span(r.TimeToRestoreP90)
		}
		if r.Releases > 0 {
			rate = fmt.Sprintf("%.0f%% (%d of %d)", 100*r.ChangeFailureRate, r.ChangeFailures, r.Releases)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%s\t%s\n", r.App, r.Deployments, r.DeploymentsPerDay, lead, rate, restore)
		if r.Unrestored > 0 && r.App != "(all)" {
			notes = append(notes, fmt.Sprintf("%s: %s not restored yet", r.App, plural(r.Unrestored, "change failure")))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeNotes(w, notes)
	return nil
}

// span renders a duration for the table: 45s, 12m, 3h 20m, 2d 4h.
func span(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < dora.Day:
		h, m := int(d.Hours()), int(d.Minutes())%60
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh %dm", h, m)
	}
	days, h := int(d/dora.Day), int(d.Hours())%24
	if h == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd %dh", days, h)
}

// plural is "1 thing" or "N things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(thing, "s"))
}
