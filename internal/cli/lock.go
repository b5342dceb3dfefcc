package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/freeze"
	"slipway.dev/slipway/internal/pipeline"
)

// holdOptions are the inputs of `slipway lock`, `unlock` and `unpin`.
type holdOptions struct {
	clientOptions
	output outputFlag
	verb   string // lock, unlock or unpin
	env    string
	reason string
	all    bool
}

func newLockCommand() *cobra.Command {
	o := &holdOptions{verb: "lock"}
	cmd := o.command(&cobra.Command{
		Use:   "lock ENV --reason TEXT",
		Short: "Lock an environment: automatic deployments wait, releases are refused",
		Long: `Locks ENV of the app (--app, or every app with --all). While it is locked,
automatic deployments to it wait (slipway status shows the commit waiting and
why) and go on by themselves once it is unlocked; releases are refused unless
forced with --force --reason (break-glass, recorded and notified). Rollbacks,
scales, stops and starts go on. The lock is kept in the ledger with who locked
it, why and when, and survives restarts. Freeze windows of the configuration
hold an environment the same way, at the times they name.`,
		Example: `  slipway lock prod --reason "black friday: no changes until Monday"
  slipway lock dev --app web --reason "migrating the database by hand"
  slipway lock prod --all --reason "incident 42"`,
	})
	cmd.Flags().StringVar(&o.reason, "reason", "", "why the environment is locked (required; recorded and shown)")
	return cmd
}

func newUnlockCommand() *cobra.Command {
	o := &holdOptions{verb: "unlock"}
	return o.command(&cobra.Command{
		Use:   "unlock ENV",
		Short: "Unlock an environment; what waited goes on",
		Long: `Lifts the lock of ENV (of the app, or of every app with --all). Automatic
deployments that waited go on by themselves; releases are taken again.`,
		Example: `  slipway unlock prod
  slipway unlock prod --all`,
	})
}

func newUnpinCommand() *cobra.Command {
	o := &holdOptions{verb: "unpin"}
	return o.command(&cobra.Command{
		Use:   "unpin ENV",
		Short: "Let an automatic environment a rollback pinned take new commits again",
		Long: `A rollback of an automatic environment pins it on the version it went back to:
it takes nothing new until its branch (or the environment it is fed from) moves
to another commit. unpin lifts the pin now: the environment takes its feed's
newest commit, even the one that was rolled back.`,
		Example: `  slipway unpin dev
  slipway unpin staging --app web`,
	})
}

// command completes cmd with the shared flags and run.
func (o *holdOptions) command(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		o.complete(cmd)
		o.env = args[0]
		if err := o.validate(); err != nil {
			return err
		}
		return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	o.register(cmd)
	o.output.register(cmd)
	if o.verb != "unpin" {
		cmd.Flags().BoolVar(&o.all, "all", false, "act on ENV of every app of the controller")
	}
	return cmd
}

func (o *holdOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.verb == "lock" && strings.TrimSpace(o.reason) == "" {
		return usageErrorf("lock %s needs --reason: say why, such as --reason \"incident 42\"", o.env)
	}
	if o.all && o.app != "" {
		return usageErrorf("--all and --app: give one (--all acts on every app)")
	}
	return nil
}

// holdResult is one app's answer, as -o json prints it.
type holdResult struct {
	App   string `json:"app"`
	Env   string `json:"env"`
	Hold  any    `json:"hold,omitempty"`
	Error string `json:"error,omitempty"`
}

func (o *holdOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	var apps []string
	if o.all {
		list, err := o.client.Apps(ctx)
		if err != nil {
			return err
		}
		for _, a := range list {
			apps = append(apps, a.Name)
		}
	} else {
		if err := o.resolveApp(ctx, "slipway "+o.verb+" --app APP "+o.env); err != nil {
			return err
		}
		apps = []string{o.app}
	}
	var results []holdResult
	var errs []error
	for _, app := range apps {
		hold, err := o.call(ctx, app)
		r := holdResult{App: app, Env: o.env, Hold: hold}
		if err != nil {
			r.Hold, r.Error = nil, err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", app, err))
		} else if !o.output.json() {
			fmt.Fprintln(stderr, o.done(app))
		}
		results = append(results, r)
	}
	if o.output.json() {
		if err := writeJSONTo(stdout, results); err != nil {
			return err
		}
	}
	if len(apps) == 1 && len(errs) == 1 {
		return errors.Unwrap(errs[0])
	}
	return errors.Join(errs...)
}

func (o *holdOptions) call(ctx context.Context, app string) (any, error) {
	by := whoAmI()
	switch o.verb {
	case "lock":
		return o.client.Lock(ctx, app, api.LockRequest{Env: o.env, Reason: o.reason, By: by})
	case "unlock":
		return o.client.Unlock(ctx, app, o.env, by)
	}
	return o.client.Unpin(ctx, app, o.env, by)
}

func (o *holdOptions) done(app string) string {
	switch o.verb {
	case "lock":
		return fmt.Sprintf("%s of %s locked: %s (slipway unlock %s lifts it)", o.env, app, o.reason, o.env)
	case "unlock":
		return fmt.Sprintf("%s of %s unlocked: what waited goes on", o.env, app)
	}
	return fmt.Sprintf("%s of %s unpinned: it takes its newest commit again", o.env, app)
}

// whoAmI names the person running the CLI for the records: USER@HOST.
func whoAmI() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		return name + "@" + host
	}
	return name
}

// holdNotes are the status lines of what holds e back: its lock, its
// freeze window, its pin and the commit waiting; name is e as the table
// shows it, several says the table holds several apps (commands then name
// the app).
func holdNotes(e pipeline.EnvStatus, name, app string, several bool) []string {
	suffix := ""
	if several {
		suffix = " --app " + app
	}
	var notes []string
	if lk := e.Locked; lk != nil {
		notes = append(notes, fmt.Sprintf("%s: locked by %s since %s: %s (slipway unlock %s%s)",
			name, lk.By, lk.Since.UTC().Format("2006-01-02 15:04"), lk.Reason, e.Name, suffix))
	}
	if f := e.Frozen; f != nil {
		notes = append(notes, fmt.Sprintf("%s: frozen (%s) until %s", name, f.Window, f.Until.UTC().Format("2006-01-02 15:04 MST")))
	}
	if p := e.Pinned; p != nil {
		notes = append(notes, fmt.Sprintf("%s: pinned on %s by a rollback from %s; takes nothing new until its feed moves from %s (slipway unpin %s%s)",
			name, short(p.Commit), short(p.From), short(p.Head), e.Name, suffix))
	}
	if w := e.Waiting; w != nil {
		notes = append(notes, fmt.Sprintf("%s: %s waits: %s", name, w.ShortCommit, w.Reason))
	}
	return notes
}

// freezeNames names each window of s, for validate's summary.
func freezeNames(s freeze.Schedule) []string {
	var names []string
	for _, w := range s {
		if w.Name != "" {
			names = append(names, w.Name+" ("+w.When()+")")
		} else {
			names = append(names, w.When())
		}
	}
	return names
}

// locksOptions are the inputs of `slipway locks`.
type locksOptions struct {
	clientOptions
	output outputFlag
	limit  int
}

func newLocksCommand() *cobra.Command {
	o := &locksOptions{}
	cmd := &cobra.Command{
		Use:   "locks",
		Short: "The locks that hold, and the newest ones with who lifted them",
		Long: `Lists the app's environments that are locked now (who locked them, why and
since when), then its newest locks, newest first, lifted ones with who lifted
them and when: every lock stays on record in the ledger.`,
		Example: `  slipway locks
  slipway locks --app web --limit 10 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.complete(cmd)
			if err := o.output.validate(); err != nil {
				return err
			}
			if o.limit < 1 || o.limit > 10000 {
				return usageErrorf("--limit %d: give a number from 1 to 10000", o.limit)
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().IntVar(&o.limit, "limit", 20, "how many of the newest locks to list (1-10000)")
	return cmd
}

func (o *locksOptions) run(ctx context.Context, stdout io.Writer) error {
	if err := o.resolveApp(ctx, "slipway locks --app APP"); err != nil {
		return err
	}
	locks, err := o.client.Locks(ctx, o.app, o.limit)
	if err != nil {
		return err
	}
	if o.output.json() {
		return writeJSONTo(stdout, locks)
	}
	if len(locks.Held) == 0 {
		fmt.Fprintf(stdout, "No environment of %s is locked.\n", o.app)
	}
	for _, lk := range locks.Held {
		fmt.Fprintf(stdout, "%s is locked by %s since %s: %s\n", lk.Env, lk.By, lk.Since.UTC().Format("2006-01-02 15:04 MST"), lk.Reason)
	}
	if len(locks.History) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tLOCKED\tBY\tUNLOCKED\tBY\tREASON")
	for _, lk := range locks.History {
		until, by := "-", "-"
		if !lk.Until.IsZero() {
			until, by = lk.Until.UTC().Format("2006-01-02 15:04"), lk.UnlockedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", lk.Env, lk.Since.UTC().Format("2006-01-02 15:04"), lk.By, until, by, lk.Reason)
	}
	return tw.Flush()
}
