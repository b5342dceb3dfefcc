package cli

import (
	"context"
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
)

// ErrOperationFailed is returned when a release, rollback or scale the CLI
// followed did not succeed (exit code 1).
var ErrOperationFailed = errors.New("operation failed")

// releaseOptions are the inputs of `slipway release`.
type releaseOptions struct {
	clientOptions
	output outputFlag
	commit string
	env    string
	force  bool
	reason string
	noWait bool
}

func newReleaseCommand() *cobra.Command {
	o := &releaseOptions{}
	cmd := &cobra.Command{
		Use:   "release [COMMIT]",
		Short: "Release a commit verified on dev to prod",
		Long: `Checks that COMMIT (default: the newest commit verified on dev) is a fast-forward
of the current release, contained in master and verified on dev; then tags its
image RCyyyyMMdd_HHmm and live, pushes an annotated git tag and the release
branch, and rolls prod out to the image's digest. Prod rolls back by itself if
the new version does not become healthy.

--env names the controlled environment to release to (default: the last one in
the configuration). It follows the rollout until the environment is live or
failed, printing each step as it starts and ends and the replicas as they
start, become ready and drain, and ends with a line saying what runs; --no-wait
returns once the release is recorded. --force --reason TEXT
overrides a failed preflight (the reason is recorded).

A locked or frozen environment (slipway lock, freeze windows) refuses releases
with the reason; --force --reason TEXT releases anyway (break-glass): the
release is recorded as forced with the reason and the lock or window it
overrode, and notified.`,
		Example: `  slipway release
  slipway release 1a2b3c4
  slipway release --app web --env prod
  slipway release 1a2b3c4 --force --reason "hotfix for the outage, tests pass"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd, args)
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().StringVar(&o.env, "env", "", "the controlled environment to release to (default: the last one)")
	cmd.Flags().BoolVar(&o.force, "force", false, "override a failed preflight, a lock or a freeze window (needs --reason)")
	cmd.Flags().StringVar(&o.reason, "reason", "", "why the preflight is overridden (recorded)")
	cmd.Flags().BoolVar(&o.noWait, "no-wait", false, "return once the release is recorded")
	return cmd
}

func (o *releaseOptions) complete(cmd *cobra.Command, args []string) {
	o.clientOptions.complete(cmd)
	if len(args) == 1 {
		o.commit = args[0]
	}
}

func (o *releaseOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.force && strings.TrimSpace(o.reason) == "" {
		return usageErrorf("--force needs --reason: say why the preflight is overridden")
	}
	if !o.force && o.reason != "" {
		return usageErrorf("--reason is only used with --force")
	}
	return nil
}

func (o *releaseOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	if err := o.resolveApp(ctx, "slipway release --app APP"); err != nil {
		return err
	}
	req := api.ReleaseRequest{Env: o.env, Commit: o.commit, Force: o.force, Reason: o.reason}
	if o.force {
		req.By = whoAmI() // a forced release records who forced it
	}
	d, err := o.client.Release(ctx, o.app, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "release %s of %s to %s: recorded as deployment %d\n", d.ReleaseName, short(d.Commit), d.Env, d.ID)
	return follow(cmd, &o.clientOptions, o.output, d, o.noWait)
}

// rollbackOptions are the inputs of `slipway rollback`.
type rollbackOptions struct {
	clientOptions
	output outputFlag
	target string
	env    string
	noWait bool
	force  bool
	reason string
}

func newRollbackCommand() *cobra.Command {
	o := &rollbackOptions{}
	cmd := &cobra.Command{
		Use:   "rollback [RC|COMMIT]",
		Short: "Put prod back on an earlier release",
		Long: `Points the release branch at an earlier released commit (default: the release
that was live before the current one), redeploys its existing image by digest and
moves the live tag to it. Recorded as a rollback. --env names the environment
(default: the last one in the configuration). It follows the
rollout, printing each step as it starts and ends, and ends with a line saying
what runs; --no-wait returns once the rollback is recorded.

Locks and freeze windows never stop a rollback. An automatic environment (dev)
can be rolled back too, to a commit it ran before (default: the version before
the current one); it is then pinned: it takes nothing new until its branch (or
the environment it is fed from) moves to another commit, or slipway unpin ENV.

Only the schema check refuses a rollback: a version built for a schema older than
the floor the environment's database was migrated past can no longer run there
(docs/migrations.md). --force --reason TEXT rolls back anyway (recorded).`,
		Example: `  slipway rollback
  slipway rollback RC20261127_0930
  slipway rollback 1a2b3c4 --app web --env prod
  slipway rollback --env dev
  slipway rollback RC20261127_0930 --force --reason "its code reads the new view"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd, args)
			if err := o.output.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().StringVar(&o.env, "env", "", "the environment to roll back (default: the last one)")
	cmd.Flags().BoolVar(&o.noWait, "no-wait", false, "return once the rollback is recorded")
	cmd.Flags().BoolVar(&o.force, "force", false, "roll back although the schema check says the version can no longer run (needs --reason)")
	cmd.Flags().StringVar(&o.reason, "reason", "", "why the schema check is overridden (recorded)")
	return cmd
}

func (o *rollbackOptions) complete(cmd *cobra.Command, args []string) {
	o.clientOptions.complete(cmd)
	if len(args) == 1 {
		o.target = args[0]
	}
}

func (o *rollbackOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	if err := o.resolveApp(ctx, "slipway rollback --app APP"); err != nil {
		return err
	}
	if o.force && strings.TrimSpace(o.reason) == "" {
		return usageErrorf("--force needs --reason: say why the schema check is overridden")
	}
	if !o.force && o.reason != "" {
		return usageErrorf("--reason is only used with --force")
	}
	req := api.RollbackRequest{Env: o.env, Target: o.target, Force: o.force, Reason: o.reason}
	if o.force {
		req.By = whoAmI() // a forced rollback records who forced it
	}
	d, err := o.client.Rollback(ctx, o.app, req)
	if err != nil {
		return err
	}
	to := short(d.Commit)
	if d.ReleaseName != "" {
		to = d.ReleaseName + " (" + to + ")"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "rollback of %s to %s: recorded as deployment %d\n", d.Env, to, d.ID)
	return follow(cmd, &o.clientOptions, o.output, d, o.noWait)
}

// scaleOptions are the inputs of `slipway scale`.
type scaleOptions struct {
	clientOptions
	output   outputFlag
	arg      string
	env      string
	replicas int
	noWait   bool
}

func newScaleCommand() *cobra.Command {
	o := &scaleOptions{}
	cmd := &cobra.Command{
		Use:   "scale ENV=N",
		Short: "Change the number of replicas of an environment",
		Long: `Runs N replicas of the environment's current image; only the replicas that must
change are started or stopped. The environment's load balancer spreads requests
over the ready ones. It prints each step as it starts and ends, and ends with a
line saying what runs.`,
		Example: `  slipway scale prod=6
  slipway scale dev=1 --app web`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd, args)
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().BoolVar(&o.noWait, "no-wait", false, "return once the change is recorded")
	return cmd
}

func (o *scaleOptions) complete(cmd *cobra.Command, args []string) {
	o.clientOptions.complete(cmd)
	o.arg = args[0]
	env, n, ok := strings.Cut(o.arg, "=")
	o.env, o.replicas = env, -1
	if r, err := strconv.Atoi(n); ok && err == nil {
		o.replicas = r
	}
}

func (o *scaleOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.env == "" || o.replicas < 1 {
		return usageErrorf("scale %q: write ENV=N with N at least 1, e.g. prod=6 (slipway stop ENV stops every replica)", o.arg)
	}
	return nil
}

func (o *scaleOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	if err := o.resolveApp(ctx, "slipway scale --app APP "+o.arg); err != nil {
		return err
	}
	d, err := o.client.Scale(ctx, o.app, o.env, o.replicas)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "scale %s to %d: recorded as deployment %d\n", o.env, o.replicas, d.ID)
	return follow(cmd, &o.clientOptions, o.output, d, o.noWait)
}

// stopStartOptions are the inputs of `slipway stop` and `slipway start`.
type stopStartOptions struct {
	clientOptions
	output outputFlag
	start  bool // start, not stop
	env    string
	noWait bool
}

func newStopCommand() *cobra.Command {
	return newStopStartCommand(&stopStartOptions{}, &cobra.Command{
		Use:   "stop ENV",
		Short: "Stop every replica of an environment, keeping its address",
		Long: `Drains and stops every replica of ENV. Its address stays taken and answers 503
with a message naming the app, the environment and the command that starts it
again; the environment's data and its current image are kept. Recorded in the
history as a stop. slipway start ENV brings it back.`,
		Example: `  slipway stop dev
  slipway stop staging --app web`,
	})
}

func newStartCommand() *cobra.Command {
	return newStopStartCommand(&stopStartOptions{start: true}, &cobra.Command{
		Use:   "start ENV",
		Short: "Start a stopped environment again",
		Long: `Starts the replicas of an environment stopped by slipway stop, on the image it
ran before, and waits until they are ready. Recorded in the history as a start.`,
		Example: `  slipway start dev
  slipway start staging --app web --no-wait`,
	})
}

func newStopStartCommand(o *stopStartOptions, cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		o.complete(cmd)
		o.env = args[0]
		if err := o.output.validate(); err != nil {
			return err
		}
		return o.run(cmd)
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().BoolVar(&o.noWait, "no-wait", false, "return once the change is recorded")
	return cmd
}

func (o *stopStartOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	verb, call := "stop", o.client.Stop
	if o.start {
		verb, call = "start", o.client.Start
	}
	if err := o.resolveApp(ctx, "slipway "+verb+" --app APP "+o.env); err != nil {
		return err
	}
	d, err := call(ctx, o.app, o.env)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s %s: recorded as deployment %d\n", verb, o.env, d.ID)
	return follow(cmd, &o.clientOptions, o.output, d, o.noWait)
}

// removeOptions are the inputs of `slipway remove`.
type removeOptions struct {
	clientOptions
	output outputFlag
	req    api.RemoveRequest
}

func newRemoveCommand() *cobra.Command {
	o := &removeOptions{}
	cmd := &cobra.Command{
		Use:   "remove --app APP [--env ENV]",
		Short: "Remove what an app or environment that left the configuration left behind",
		Long: `Removes an app (or, with --env, one of its environments) that is no longer in
the controller's configuration: it stops what still runs and deletes its
records. The database and the image's registry tags are kept unless
--delete-database and --delete-tags say otherwise. It prints every thing it
deleted and every thing it kept.

--app is required: without it, remove lists what left the configuration.`,
		Example: `  slipway remove --app old-site
  slipway remove --app web --env qa --delete-database
  slipway remove --app old-site --delete-database --delete-tags -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd)
			if err := o.output.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().StringVar(&o.req.Env, "env", "", "remove only this environment of the app")
	cmd.Flags().BoolVar(&o.req.DeleteDatabase, "delete-database", false, "delete the database too")
	cmd.Flags().BoolVar(&o.req.DeleteTags, "delete-tags", false, "delete the image's tags in the registry too")
	return cmd
}

func (o *removeOptions) run(ctx context.Context, stdout io.Writer) error {
	if o.app == "" {
		return o.noApp(ctx)
	}
	o.req.App = o.app
	rep, err := o.client.Remove(ctx, o.req)
	if err != nil {
		return err
	}
	if o.output.json() {
		return writeJSONTo(stdout, rep)
	}
	for _, part := range []struct {
		title string
		lines []string
	}{{"removed", rep.Removed}, {"kept", rep.Kept}} {
		if len(part.lines) == 0 {
			continue
		}
		fmt.Fprintf(stdout, "%s:\n", part.title)
		for _, l := range part.lines {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	return nil
}

// noApp is the error of remove without --app: it names what left the
// configuration.
func (o *removeOptions) noApp(ctx context.Context) error {
	left, err := o.client.Leftovers(ctx)
	if err != nil {
		return err
	}
	if len(left) == 0 {
		return usageErrorf("remove needs --app APP: nothing has left the controller's configuration, so there is nothing to remove")
	}
	var cmds []string
	for _, l := range left {
		c := "slipway remove --app " + l.App
		if l.Env != "" {
			c += " --env " + l.Env
		}
		cmds = append(cmds, c)
	}
	return usageErrorf("remove needs --app APP; what left the configuration:\n  %s", strings.Join(cmds, "\n  "))
}

// replicas is "1 replica" or "N replicas".
func replicas(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// historyOptions are the inputs of `slipway history`.
type historyOptions struct {
	clientOptions
	output outputFlag
	env    string
	limit  int
}

func newHistoryCommand() *cobra.Command {
	o := &historyOptions{}
	cmd := &cobra.Command{
		Use:   "history [ENV]",
		Short: "List deployments, releases and rollbacks",
		Long: `Lists every deployment (automatic deploys, releases, rollbacks, scale changes,
stops and starts), newest first, with commit, release, digest, trigger, time and
outcome.`,
		Example: `  slipway history
  slipway history prod --limit 10
  slipway history prod --app web -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd)
			if len(args) == 1 {
				o.env = args[0]
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().IntVar(&o.limit, "limit", 50, "at most this many entries")
	return cmd
}

func (o *historyOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.limit < 1 || o.limit > 10000 {
		return usageErrorf("--limit %d: give a number from 1 to 10000", o.limit)
	}
	return nil
}

func (o *historyOptions) run(ctx context.Context, stdout io.Writer) error {
	if err := o.resolveApp(ctx, "slipway history --app APP"); err != nil {
		return err
	}
	h, err := o.client.History(ctx, o.app, o.env, o.limit)
	if err != nil {
		return err
	}
	if o.output.json() {
		return writeJSONTo(stdout, h)
	}
	return renderHistory(stdout, h, o.limit)
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
			d.Env, string(d.Kind), short(d.Commit), rel, orDash(shortDigest(d.Digest)), schemaCell(d.Schema), d.Trigger, out}})
	}
	for _, b := range h.Builds {
		out := string(b.State)
		if b.Reason != "" {
			out += ": " + firstLineOf(b.Reason)
		}
		rows = append(rows, row{b.Created, []string{"b" + strconv.FormatInt(b.ID, 10), b.Created.UTC().Format("2006-01-02 15:04:05"),
			"-", "build", short(b.Commit), "-", orDash(shortDigest(b.Digest)), schemaCell(b.Schema), orDash(b.Trigger), out}})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.After(rows[j].at) })
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tENV\tKIND\tCOMMIT\tRELEASE\tDIGEST\tSCHEMA\tTRIGGER\tOUTCOME")
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

// diffOptions are the inputs of `slipway diff`.
type diffOptions struct {
	clientOptions
	output   outputFlag
	from, to string
}

func newDiffCommand() *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff [FROM TO]",
		Short: "List the commits one environment runs and another does not",
		Long:  `Lists the commits that environment FROM runs and TO does not (default: dev prod).`,
		Example: `  slipway diff
  slipway diff dev staging --app web
  slipway diff dev prod -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return usageErrorf("diff takes no environment or two (FROM TO), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd)
			o.from, o.to = "dev", "prod"
			if len(args) == 2 {
				o.from, o.to = args[0], args[1]
			}
			if err := o.output.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	return cmd
}

func (o *diffOptions) run(ctx context.Context, stdout io.Writer) error {
	if err := o.resolveApp(ctx, "slipway diff --app APP"); err != nil {
		return err
	}
	list, err := o.client.Diff(ctx, o.app, o.from, o.to)
	if err != nil {
		return err
	}
	if o.output.json() {
		return writeJSONTo(stdout, api.Diff{From: o.from, To: o.to, Commits: list})
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "%s runs nothing that %s does not.\n", o.from, o.to)
		return nil
	}
	fmt.Fprintf(stdout, "%d commit(s) in %s not in %s:\n", len(list), o.from, o.to)
	for _, c := range list {
		fmt.Fprintf(stdout, "  %s %s (%s, %s)\n", c.Short, c.Subject, c.Author, c.Time.UTC().Format("2006-01-02 15:04"))
	}
	return nil
}
