package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/config"
)

// validateOptions are the inputs of `slipway validate`.
type validateOptions struct {
	configPath string
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
	var apps []validateApp
	for _, cfg := range set.Apps {
		a := validateApp{App: cfg.App, Repo: cfg.Repo.URL, Registry: cfg.Registry.Ref, Runtime: cfg.Runtime}
		for _, e := range cfg.Environments {
			a.Environments = append(a.Environments, validateEnvSummary{Name: e.Name, Branch: e.Branch, From: e.From, Mode: e.Mode, Replicas: e.Replicas, Listen: e.Listen})
		}
		apps = append(apps, a)
	}
	out := validateOutput{File: o.configPath, Valid: true}
	if set.Multi {
		out.Apps = apps
	} else {
		out.validateApp = apps[0]
	}
	if o.output.json() {
		return writeJSONTo(stdout, out)
	}
	fmt.Fprintf(stdout, "%s: valid\n", o.configPath)
	for _, a := range apps {
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
		}
	}
	return nil
}
