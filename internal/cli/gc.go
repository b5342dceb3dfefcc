package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/gc"
)

// gcOptions are the inputs of `slipway gc`.
type gcOptions struct {
	clientOptions
	output outputFlag
	dryRun bool
}

func newGCCommand() *cobra.Command {
	o := &gcOptions{}
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete the app's images that nothing needs, or say what would go with --dry-run",
		Long: `Collects the app's images now, as slipway serve does every gc.interval
(docs/gc.md): every image an environment runs or ever ran to the end, every
release, and the gc.keepBuilds newest builds are kept; the other images of the
app's builds are deleted from the registry (the embedded registry's unused
blobs are then swept), and the local runtime's unpacked images that no
environment runs or ran just before are removed. The ledger keeps every row.
Prints what it deleted and why each kept image is kept.`,
		Example: `  slipway gc --dry-run
  slipway gc --app web -o json`,
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
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "delete nothing: say what would be deleted and why each kept image is kept")
	return cmd
}

func (o *gcOptions) run(ctx context.Context, w io.Writer) error {
	if err := o.resolveApp(ctx, "slipway gc --app APP"); err != nil {
		return err
	}
	rep, err := o.client.GC(ctx, o.app, o.dryRun)
	if err != nil {
		return err
	}
	if o.output.json() {
		return writeJSONTo(w, rep)
	}
	printGC(w, rep)
	if len(rep.Errors) > 0 {
		return fmt.Errorf("collection of %s: %s", rep.App, strings.Join(rep.Errors, "; "))
	}
	return nil
}

func printGC(w io.Writer, rep gc.Report) {
	del := "deleted"
	if rep.DryRun {
		del = "would delete"
	}
	for _, it := range rep.Delete {
		fmt.Fprintf(w, "%s %s  %s: %s\n", del, shortDigest(it.Digest), shortCommit(it.Commit), strings.Join(it.Reasons, "; "))
	}
	for _, it := range rep.Keep {
		fmt.Fprintf(w, "keep %s  %s: %s\n", shortDigest(it.Digest), shortCommit(it.Commit), strings.Join(it.Reasons, "; "))
	}
	fmt.Fprintf(w, "%s: %d images kept, %d %s", rep.App, len(rep.Keep), len(rep.Delete), del)
	if !rep.DryRun {
		fmt.Fprintf(w, " (%d deleted), %d blobs swept (%s)", len(rep.Deleted), rep.Blobs, sizeOf(rep.BlobBytes))
	}
	fmt.Fprintf(w, "; unpacked images %s: %d (%s)\n", map[bool]string{true: "to remove", false: "removed"}[rep.DryRun], len(rep.Unpacked), sizeOf(rep.UnpackedBytes))
}

func shortCommit(c string) string {
	if c == "" {
		return "(no build)"
	}
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

func sizeOf(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
