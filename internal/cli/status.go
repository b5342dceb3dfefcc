package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/pipeline"
)

func newStatusCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show which commit runs in which environment",
		Long: `Shows, per environment, the commit it runs, its release (RC name), image digest,
replicas ready/desired, health, since when, its URL and its last failure; then
the commits on master that prod does not have.

With -o json it prints the documented, stable object described in docs/api.md.`,
		Example: `  slipway status
  slipway status -o json | jq -r '.environments[] | select(.name=="prod") | .commit'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			st, err := f.client(cmd).Status(cmd.Context())
			if err != nil {
				return err
			}
			if f.json() {
				return writeJSONTo(cmd.OutOrStdout(), st)
			}
			return renderStatus(cmd.OutOrStdout(), st, time.Now())
		},
	}
	f.register(cmd, true)
	return cmd
}

// renderStatus writes the text form of `slipway status`.
func renderStatus(w io.Writer, st pipeline.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tCOMMIT\tRELEASE\tDIGEST\tREPLICAS\tHEALTHY\tSINCE\tURL")
	var notes, isolations []string
	isolated := map[string][]string{}
	for _, e := range st.Environments {
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", e.Name, commit, release, digest,
			e.Replicas.Ready, e.Replicas.Desired, healthy, since, e.URL)
		if e.Rollout != nil {
			what := e.Rollout.Kind + " of " + short(e.Rollout.Commit)
			if e.Rollout.Release != "" {
				what += " (" + e.Rollout.Release + ")"
			}
			notes = append(notes, fmt.Sprintf("%s: %s in progress, step %s", e.Name, what, e.Rollout.Step))
		}
		if e.LastFailure != nil {
			notes = append(notes, fmt.Sprintf("%s: last failure: %s", e.Name, firstLineOf(*e.LastFailure)))
		}
		if e.Message != nil {
			notes = append(notes, fmt.Sprintf("%s: %s", e.Name, firstLineOf(*e.Message)))
		}
		if e.Isolation != nil {
			if _, ok := isolated[*e.Isolation]; !ok {
				isolations = append(isolations, *e.Isolation)
			}
			isolated[*e.Isolation] = append(isolated[*e.Isolation], e.Name)
		}
	}
	// How replicas are confined, e.g. "replicas run in namespaces+chroot
	// (dev, prod)".
	if len(isolations) > 0 {
		var parts []string
		for _, iso := range isolations {
			parts = append(parts, fmt.Sprintf("%s (%s)", iso, strings.Join(isolated[iso], ", ")))
		}
		notes = append(notes, "replicas run in "+strings.Join(parts, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	prod := "prod"
	var source string
	prodRuns := false
	for _, e := range st.Environments {
		if e.Branch == "release" {
			prod = e.Name
			prodRuns = e.Commit != nil
		}
		if e.Branch == "master" {
			source = e.Branch
		}
	}
	if source == "" {
		source = "master"
	}
	fmt.Fprintln(w)
	switch len(st.Pending) {
	case 0:
		if prodRuns {
			fmt.Fprintf(w, "%s runs everything on %s.\n", prod, source)
		} else {
			fmt.Fprintf(w, "Nothing on %s yet.\n", source)
		}
	default:
		s := "s"
		if len(st.Pending) == 1 {
			s = ""
		}
		fmt.Fprintf(w, "%d commit%s on %s not in %s:\n", len(st.Pending), s, source, prod)
		for _, c := range st.Pending {
			fmt.Fprintf(w, "  %s %s\n", c.Short, c.Subject)
		}
	}
	return nil
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
