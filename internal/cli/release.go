package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/ledger"
)

// ErrOperationFailed is returned when a release, rollback or scale the CLI
// followed did not succeed (exit code 1).
var ErrOperationFailed = errors.New("operation failed")

func newReleaseCommand() *cobra.Command {
	var f clientFlags
	var force, noWait bool
	var reason string
	cmd := &cobra.Command{
		Use:   "release [COMMIT]",
		Short: "Release a commit verified on dev to prod",
		Long: `Checks that COMMIT (default: the newest commit verified on dev) is a fast-forward
of the current release, contained in master and verified on dev; then tags its
image RCyyyyMMdd_HHmm and live, pushes an annotated git tag and the release
branch, and rolls prod out to the image's digest. Prod rolls back by itself if
the new version does not become healthy.

It follows the rollout until prod is live or failed; --no-wait returns once the
release is recorded. --force --reason TEXT overrides a failed preflight (the
reason is recorded).`,
		Example: `  slipway release
  slipway release 1a2b3c4
  slipway release 1a2b3c4 --force --reason "hotfix for the outage, tests pass"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			if force && strings.TrimSpace(reason) == "" {
				return usageErrorf("--force needs --reason: say why the preflight is overridden")
			}
			if !force && reason != "" {
				return usageErrorf("--reason is only used with --force")
			}
			req := api.ReleaseRequest{Force: force, Reason: reason}
			if len(args) == 1 {
				req.Commit = args[0]
			}
			c := f.client(cmd)
			d, err := c.Release(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "release %s of %s to %s: recorded as deployment %d\n", d.ReleaseName, short(d.Commit), d.Env, d.ID)
			return follow(cmd, c, &f, d, noWait)
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&force, "force", false, "override a failed preflight (needs --reason)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the preflight is overridden (recorded)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the release is recorded")
	return cmd
}

func newRollbackCommand() *cobra.Command {
	var f clientFlags
	var noWait bool
	cmd := &cobra.Command{
		Use:   "rollback [RC|COMMIT]",
		Short: "Put prod back on an earlier release",
		Long: `Points the release branch at an earlier released commit (default: the release
that was live before the current one), redeploys its existing image by digest and
moves the live tag to it. Recorded as a rollback.`,
		Example: `  slipway rollback
  slipway rollback RC20261127_0930
  slipway rollback 1a2b3c4`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			target := ""
			if len(args) == 1 {
				target = args[0]
			}
			c := f.client(cmd)
			d, err := c.Rollback(cmd.Context(), target)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "rollback of %s to %s (%s): recorded as deployment %d\n", d.Env, d.ReleaseName, short(d.Commit), d.ID)
			return follow(cmd, c, &f, d, noWait)
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the rollback is recorded")
	return cmd
}

func newScaleCommand() *cobra.Command {
	var f clientFlags
	var noWait bool
	cmd := &cobra.Command{
		Use:   "scale ENV=N",
		Short: "Change the number of replicas of an environment",
		Long: `Runs N replicas of the environment's current image; only the replicas that must
change are started or stopped. The environment's load balancer spreads requests
over the ready ones.`,
		Example: `  slipway scale prod=6
  slipway scale dev=1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			env, n, ok := strings.Cut(args[0], "=")
			replicas, err := strconv.Atoi(n)
			if !ok || env == "" || err != nil || replicas < 1 {
				return usageErrorf("scale %q: write ENV=N with N at least 1, e.g. prod=6", args[0])
			}
			c := f.client(cmd)
			d, err := c.Scale(cmd.Context(), env, replicas)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "scale %s to %d: recorded as deployment %d\n", env, replicas, d.ID)
			return follow(cmd, c, &f, d, noWait)
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the change is recorded")
	return cmd
}

// follow prints d's progress on stderr until it ends, then its outcome on
// stdout; a deployment that did not succeed is ErrOperationFailed.
func follow(cmd *cobra.Command, c *api.Client, f *clientFlags, d ledger.Deployment, noWait bool) error {
	if !noWait {
		var err error
		d, err = c.Wait(cmd.Context(), d.ID, func(d ledger.Deployment) {
			if !d.State.Final() {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s: %s\n", d.State, d.Step)
			}
		})
		if err != nil {
			return err
		}
	}
	if f.json() {
		if err := writeJSONTo(cmd.OutOrStdout(), d); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(cmd.OutOrStdout(), outcome(d))
	}
	if d.State.Final() && d.State != ledger.StateSucceeded {
		return fmt.Errorf("%s %d %s: %s: %w", d.Kind, d.ID, d.State, d.Reason, ErrOperationFailed)
	}
	return nil
}

func outcome(d ledger.Deployment) string {
	name := d.ReleaseName
	if name == "" {
		name = short(d.Commit)
	} else {
		name += " (" + short(d.Commit) + ")"
	}
	switch {
	case !d.State.Final():
		return fmt.Sprintf("%s of %s to %s: %s (follow it with: slipway status)", d.Kind, name, d.Env, d.State)
	case d.State == ledger.StateSucceeded && d.Kind == ledger.KindScale:
		return fmt.Sprintf("%s runs %d replicas of %s", d.Env, d.Replicas, name)
	case d.State == ledger.StateSucceeded:
		return fmt.Sprintf("%s is live on %s (%d replicas, %s)", name, d.Env, d.Replicas, d.Digest)
	}
	return fmt.Sprintf("%s of %s to %s %s: %s", d.Kind, name, d.Env, d.State, d.Reason)
}

func newHistoryCommand() *cobra.Command {
	var f clientFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "history [ENV]",
		Short: "List deployments, releases and rollbacks",
		Long: `Lists every deployment (automatic deploys, releases, rollbacks, scale changes),
newest first, with commit, release, digest, trigger, time and outcome.`,
		Example: `  slipway history
  slipway history prod --limit 10
  slipway history prod -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			env := ""
			if len(args) == 1 {
				env = args[0]
			}
			h, err := f.client(cmd).History(cmd.Context(), env, limit)
			if err != nil {
				return err
			}
			if f.json() {
				return writeJSONTo(cmd.OutOrStdout(), h)
			}
			return renderHistory(cmd.OutOrStdout(), h, limit)
		},
	}
	f.register(cmd, true)
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many entries")
	return cmd
}

// renderHistory writes deployments and builds as one table, newest first,
// at most limit rows.
func renderHistory(w io.Writer, h api.History, limit int) error {
	type row struct {
		at    time.Time
		cells []string
	}
	var rows []row
	for _, d := range h.Deployments {
		rel := d.ReleaseName
		if rel == "" {
			rel = "-"
		}
		out := string(d.State)
		if d.Reason != "" {
			out += ": " + firstLineOf(d.Reason)
		}
		if d.Forced {
			out += " (forced: " + d.ForceReason + ")"
		}
		if d.Note != "" {
			out += " [" + d.Note + "]"
		}
		rows = append(rows, row{d.CreatedAt, []string{strconv.FormatInt(d.ID, 10), d.CreatedAt.UTC().Format("2006-01-02 15:04:05"),
			d.Env, string(d.Kind), short(d.Commit), rel, orDash(shortDigest(d.Digest)), d.Trigger, out}})
	}
	for _, b := range h.Builds {
		out := string(b.State)
		if b.Reason != "" {
			out += ": " + firstLineOf(b.Reason)
		}
		rows = append(rows, row{b.Created, []string{"b" + strconv.FormatInt(b.ID, 10), b.Created.UTC().Format("2006-01-02 15:04:05"),
			"-", "build", short(b.Commit), "-", orDash(shortDigest(b.Digest)), orDash(b.Trigger), out}})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.After(rows[j].at) })
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tENV\tKIND\tCOMMIT\tRELEASE\tDIGEST\tTRIGGER\tOUTCOME")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells, "\t"))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newDiffCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "diff [FROM TO]",
		Short: "List the commits one environment runs and another does not",
		Long:  `Lists the commits that environment FROM runs and TO does not (default: dev prod).`,
		Example: `  slipway diff
  slipway diff dev prod -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return usageErrorf("diff takes no environment or two (FROM TO), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			from, to := "dev", "prod"
			if len(args) == 2 {
				from, to = args[0], args[1]
			}
			list, err := f.client(cmd).Diff(cmd.Context(), from, to)
			if err != nil {
				return err
			}
			if f.json() {
				return writeJSONTo(cmd.OutOrStdout(), api.Diff{From: from, To: to, Commits: list})
			}
			if len(list) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s runs nothing that %s does not.\n", from, to)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d commit(s) in %s not in %s:\n", len(list), from, to)
			for _, c := range list {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s %s (%s, %s)\n", c.Short, c.Subject, c.Author, c.Time.UTC().Format("2006-01-02 15:04"))
			}
			return nil
		},
	}
	f.register(cmd, true)
	return cmd
}

// envLogsRunE shows an environment's logs through the controller.
func envLogsRunE(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErrorf("logs: name an environment (slipway logs dev) or a build (slipway logs build COMMIT)")
	}
	f := clientFlags{server: flagValue(cmd, "server")}
	follow := flagValue(cmd, "follow") == "true"
	return f.client(cmd).Logs(cmd.Context(), args[0], follow, cmd.OutOrStdout())
}

// addEnvLogs makes `slipway logs ENV [-f]` work: on an existing logs command
// (which may have a `build` subcommand) or on a new one.
func addEnvLogs(root *cobra.Command) {
	var f clientFlags
	var logs *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "logs" {
			logs = c
		}
	}
	if logs == nil {
		logs = &cobra.Command{
			Use:   "logs ENV",
			Short: "Show an environment's logs",
		}
		root.AddCommand(logs)
	}
	if logs.Example == "" {
		logs.Example = "  slipway logs prod\n  slipway logs dev -f"
	} else {
		logs.Example += "\n  slipway logs prod\n  slipway logs dev -f"
	}
	logs.Long = strings.TrimSpace(logs.Long + "\n\n`slipway logs ENV` prints the output of the environment's replicas, each line\nprefixed by its replica; -f keeps following it.")
	logs.Args = cobra.ArbitraryArgs
	logs.RunE = envLogsRunE
	if logs.Flags().Lookup("server") == nil {
		f.register(logs, false)
	}
	if logs.Flags().Lookup("follow") == nil {
		logs.Flags().BoolP("follow", "f", false, "keep printing new lines")
	}
}
