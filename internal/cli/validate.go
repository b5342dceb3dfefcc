package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/apps"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
)

// validateOptions are the inputs of `slipway validate`.
type validateOptions struct {
	configPath string
	dataDir    string
	output     outputFlag
}

func newValidateCommand() *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a slipway.yaml",
		Long: `Parses and checks the configuration (--config, or FILE), of one app or of
several, and prints a summary.
Each mistake is reported as FILE:LINE: FIELD: what is wrong and what would be
right; any mistake makes the exit code 2.`,
		Example: `  slipway validate
  slipway validate --config deploy/slipway.yaml
  slipway validate -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(cmd, args); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.OutOrStdout())
		},
	}
	o.output.register(cmd)
	return cmd
}

func (o *validateOptions) complete(cmd *cobra.Command, args []string) error {
	o.configPath = flagValue(cmd, "config")
	o.dataDir = flagValue(cmd, "data-dir")
	if len(args) == 1 {
		o.configPath = args[0]
	}
	return nil
}

func (o *validateOptions) validate() error { return o.output.validate() }

// validateOutput is the JSON `slipway validate -o json` prints: the app's
// fields for a file of one app, apps for a file of several.
type validateOutput struct {
	File   string          `json:"file"`
	Valid  bool            `json:"valid"`
	Errors []validateError `json:"errors,omitempty"`
	validateApp
	Apps []validateApp `json:"apps,omitempty"`
	// Leftovers are the apps and environments the data directory's ledger
	// has deployed that the file no longer names.
	Leftovers []api.Leftover `json:"leftovers,omitempty"`
	// Missing are programs the apps need that this machine lacks.
	Missing []missingTool `json:"missing,omitempty"`
}

type validateApp struct {
	App          string               `json:"app,omitempty"`
	Repo         string               `json:"repo,omitempty"`
	Registry     string               `json:"registry,omitempty"` // "" for the embedded registry
	Runtime      string               `json:"runtime,omitempty"`
	Environments []validateEnvSummary `json:"environments,omitempty"`
}

type validateError struct {
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type validateEnvSummary struct {
	Name     string `json:"name"`
	Branch   string `json:"branch"`
	From     string `json:"from,omitempty"`
	Mode     string `json:"mode"`
	Replicas int    `json:"replicas"`
	Listen   string `json:"listen,omitempty"`
	// Freeze names the freeze windows that hold the environment.
	Freeze []string `json:"freeze,omitempty"`
}

func (o *validateOptions) run(stdout io.Writer) error {
	set, err := config.LoadSet(o.configPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return usageErrorf("%s does not exist: write one (docs/configuration.md) or name it with --config", o.configPath)
		}
		if o.output.json() {
			out := validateOutput{File: o.configPath}
			for _, fe := range config.FieldErrors(err) {
				out.Errors = append(out.Errors, validateError{Line: fe.Line, Field: fe.Field, Message: fe.Msg})
			}
			if len(out.Errors) == 0 {
				out.Errors = []validateError{{Message: err.Error()}}
			}
			if jerr := writeJSONTo(stdout, out); jerr != nil {
				return jerr
			}
		}
		return &UsageError{Err: err}
	}
	var summaries []validateApp
	for _, cfg := range set.Apps {
		a := validateApp{App: cfg.App, Repo: cfg.Repo.URL, Registry: cfg.Registry.Ref, Runtime: cfg.Runtime}
		for _, e := range cfg.Environments {
			a.Environments = append(a.Environments, validateEnvSummary{Name: e.Name, Branch: e.Branch, From: e.From, Mode: e.Mode, Replicas: e.Replicas, Listen: e.Listen,
				Freeze: freezeNames(cfg.FreezeSchedule(e.Name))})
		}
		summaries = append(summaries, a)
	}
	out := validateOutput{File: o.configPath, Valid: true}
	left, err := o.leftovers(set)
	if err != nil {
		return err
	}
	out.Leftovers = left
	out.Missing = missingTools(set)
	if set.Multi {
		out.Apps = summaries
	} else {
		out.validateApp = summaries[0]
	}
	if o.output.json() {
		if err := writeJSONTo(stdout, out); err != nil {
			return err
		}
		return printMissing(io.Discard, out.Missing)
	}
	fmt.Fprintf(stdout, "%s: valid\n", o.configPath)
	for _, a := range summaries {
		reg := a.Registry
		if reg == "" {
			reg = "embedded"
		}
		fmt.Fprintf(stdout, "app %s from %s, registry %s, runtime %s\n", a.App, a.Repo, reg, a.Runtime)
		for _, e := range a.Environments {
			var where []string
			if e.Listen != "" {
				where = append(where, "on "+e.Listen)
			}
			feed := "tracks " + e.Branch
			if e.From != "" {
				feed = "takes from " + e.From
			}
			fmt.Fprintf(stdout, "  %-8s %s (%s), %d replicas %s\n", e.Name, feed, e.Mode, e.Replicas, strings.Join(where, " "))
			if len(e.Freeze) > 0 {
				fmt.Fprintf(stdout, "  %-8s frozen: %s\n", "", strings.Join(e.Freeze, "; "))
			}
		}
	}
	for _, l := range left {
		what := "app " + l.App
		if l.Env != "" {
			what = "environment " + l.Env + " of app " + l.App
		}
		fmt.Fprintf(stdout, "left the configuration, still deployed: %s (remove it with: %s)\n", what, apps.RemoveCommand(l))
	}
	return printMissing(stdout, out.Missing)
}

// leftovers reads what the data directory's ledger has deployed that set
// no longer names; nothing when there is no ledger yet.
func (o *validateOptions) leftovers(set *config.Set) ([]api.Leftover, error) {
	if o.dataDir == "" {
		return nil, nil
	}
	path := filepath.Join(o.dataDir, ledger.FileName)
	if _, err := os.Stat(path); err != nil {
		return nil, nil
	}
	ctx := context.Background()
	store, err := ledger.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read the ledger in %s for environments that left the configuration: %w", o.dataDir, err)
	}
	defer store.Close()
	refs, err := store.DeployedEnvs(ctx)
	if err != nil {
		return nil, err
	}
	return apps.FindLeftovers(set, refs), nil
}
