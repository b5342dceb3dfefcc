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
	"slipway.dev/slipway/internal/pipeline"
)

// statusOptions are the inputs of `slipway status`.
type statusOptions struct {
	clientOptions
	output outputFlag
}

func newStatusCommand() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show which commit runs in which environment",
		Long: `Shows, per environment, the commit it runs, its release (RC name), image digest,
replicas ready/desired, health, since when, its URL and its last failure; then
the commits on master that prod does not have.

Without --app, it shows every app the controller runs, one row per app and
environment. With -o json it prints the documented, stable object described in
docs/api.md: one app's status (with its name in "app"), or {"apps": [...]} when
the controller runs several and no --app is given.`,
		Example: `  slipway status
  slipway status --app web
  slipway status -o json | jq -r '.environments[] | select(.name=="prod") | .commit'`,
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
	return cmd
}

func (o *statusOptions) validate() error { return o.output.validate() }

func (o *statusOptions) run(ctx context.Context, stdout io.Writer) error {
	var sts []pipeline.Status
	if o.app != "" {
		st, err := o.client.Status(ctx, o.app)
		if err != nil {
			return err
		}
		sts = []pipeline.Status{st}
	} else {
		var err error
		if sts, err = o.client.StatusAll(ctx); err != nil {
			return err
		}
	}
	if len(sts) == 1 {
		if o.output.json() {
			return writeJSONTo(stdout, sts[0])
		}
		return renderStatus(stdout, sts[0], time.Now())
	}
	if o.output.json() {
		return writeJSONTo(stdout, api.AppsStatus{Apps: sts})
	}
	return renderStatusAll(stdout, sts, time.Now())
}

// renderStatus writes the text form of `slipway status` for one app.
func renderStatus(w io.Writer, st pipeline.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tCOMMIT\tRELEASE\tDIGEST\tREPLICAS\tHEALTHY\tSINCE\tURL")
	for _, e := range st.Environments {
		fmt.Fprintln(tw, strings.Join(envRow(e, now), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeNotes(w, envNotes(st, ""))
	fmt.Fprintln(w)
	for _, line := range pendingLines(st) {
		fmt.Fprintln(w, line)
	}
	return nil
}

// renderStatusAll writes the text form of `slipway status` for several
// apps: one table of every app and environment, then each app's notes and
// pending commits.
func renderStatusAll(w io.Writer, sts []pipeline.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tENVIRONMENT\tCOMMIT\tRELEASE\tDIGEST\tREPLICAS\tHEALTHY\tSINCE\tURL")
	var notes []string
	for _, st := range sts {
		for _, e := range st.Environments {
			fmt.Fprintln(tw, st.App+"\t"+strings.Join(envRow(e, now), "\t"))
		}
		notes = append(notes, envNotes(st, st.App+"/")...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeNotes(w, notes)
	fmt.Fprintln(w)
	for _, st := range sts {
		lines := pendingLines(st)
		fmt.Fprintf(w, "%s: %s\n", st.App, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintln(w, l)
		}
	}
	return nil
}

// envRow is an environment's cells: name, commit, release, digest,
// replicas, health, since and URL.
func envRow(e pipeline.EnvStatus, now time.Time) []string {
	commit, release, digest, since := "-", "-", "-", "-"
	if e.Commit != nil {
		commit = short(*e.Commit)
	}
	if e.Release != nil {
		release = *e.Release
	}
	if e.Digest != nil {
		digest = shortDigest(*e.Digest)
	}
	if e.Since != nil {
		since = e.Since.UTC().Format("2006-01-02 15:04") + " (" + age(now.Sub(*e.Since)) + " ago)"
	}
	healthy := "no"
	if e.Healthy {
		healthy = "yes"
	}
	if e.Commit == nil {
		healthy = "-"
	}
	if e.Stopped {
		healthy = "stopped"
	}
	return []string{e.Name, commit, release, digest, fmt.Sprintf("%d/%d", e.Replicas.Ready, e.Replicas.Desired), healthy, since, e.URL}
}

// envNotes are the lines under the table: rollouts in flight, failures,
// the runtime's messages, stopped environments and how replicas are
// confined; prefix goes before each environment's name.
func envNotes(st pipeline.Status, prefix string) []string {
	var notes, isolations []string
	isolated := map[string][]string{}
	for _, e := range st.Environments {
		name := prefix + e.Name
		if e.Rollout != nil {
			what := e.Rollout.Kind + " of " + short(e.Rollout.Commit)
			if e.Rollout.Release != "" {
				what += " (" + e.Rollout.Release + ")"
			}
			notes = append(notes, fmt.Sprintf("%s: %s in progress, step %s", name, what, e.Rollout.Step))
		}
		if e.Stopped {
			start := "slipway start " + e.Name
			if prefix != "" {
				start += " --app " + st.App
			}
			notes = append(notes, fmt.Sprintf("%s: stopped; %s starts it again", name, start))
		}
		notes = append(notes, holdNotes(e, name, st.App, prefix != "")...)
		if line := schemaNote(e); line != "" {
			notes = append(notes, name+": "+line)
		}
		if e.LastFailure != nil {
			notes = append(notes, fmt.Sprintf("%s: last failure: %s", name, firstLineOf(*e.LastFailure)))
		}
		if e.Message != nil {
			notes = append(notes, fmt.Sprintf("%s: %s", name, firstLineOf(*e.Message)))
		}
		for _, r := range e.Instances {
			// A replica the kernel killed and slipway restarted is
			// healthy again, but the team needs to know why it went.
			if strings.HasPrefix(r.LastExit, "killed:") {
				notes = append(notes, fmt.Sprintf("%s: replica %s was %s; restarted (%d restarts)", name, r.Name, r.LastExit, r.Restarts))
			}
		}
		if e.Isolation != nil {
			if _, ok := isolated[*e.Isolation]; !ok {
				isolations = append(isolations, *e.Isolation)
			}
			isolated[*e.Isolation] = append(isolated[*e.Isolation], name)
		}
	}
	// How replicas are confined, e.g. "replicas run in sandbox
	// (dev, prod)".
	if len(isolations) > 0 {
		var parts []string
		for _, iso := range isolations {
			parts = append(parts, fmt.Sprintf("%s (%s)", iso, strings.Join(isolated[iso], ", ")))
		}
		notes = append(notes, "replicas run in "+strings.Join(parts, "; "))
	}
	return notes
}

func writeNotes(w io.Writer, notes []string) {
	if len(notes) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

// pendingLines say what the source branch has that the final environment
// does not run: a summary line, then one line per commit.
func pendingLines(st pipeline.Status) []string {
	final, source, finalRuns := "prod", "master", false
	if n := len(st.Environments); n > 0 {
		last := st.Environments[n-1]
		final, finalRuns = last.Name, last.Commit != nil
		if b := st.Environments[0].Branch; b != "" {
			source = b
		}
	}
	switch len(st.Pending) {
	case 0:
		if finalRuns {
			return []string{fmt.Sprintf("%s runs everything on %s.", final, source)}
		}
		return []string{fmt.Sprintf("Nothing on %s yet.", source)}
	}
	s := "s"
	if len(st.Pending) == 1 {
		s = ""
	}
	lines := []string{fmt.Sprintf("%d commit%s on %s not in %s:", len(st.Pending), s, source, final)}
	for _, c := range st.Pending {
		lines = append(lines, fmt.Sprintf("  %s %s", c.Short, c.Subject))
	}
	return lines
}

func shortDigest(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func firstLineOf(s string) string {
	line, rest, _ := strings.Cut(s, "\n")
	if rest != "" {
		return line + " …"
	}
	return line
}

// age renders a duration the way people say it: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
