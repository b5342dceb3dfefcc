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
		Long: `Parses and checks the configuration (--config, or FILE) and prints a summary.
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

// validateOutput is the JSON `slipway validate -o json` prints.
type validateOutput struct {
	File         string               `json:"file"`
	Valid        bool                 `json:"valid"`
	Errors       []validateError      `json:"errors,omitempty"`
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
	Mode     string `json:"mode"`
	Replicas int    `json:"replicas"`
	Listen   string `json:"listen,omitempty"`
}

func (o *validateOptions) run(stdout io.Writer) error {
	cfg, err := config.Load(o.configPath)
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
	out := validateOutput{File: o.configPath, Valid: true, App: cfg.App, Repo: cfg.Repo.URL, Registry: cfg.Registry.Ref, Runtime: cfg.Runtime}
	for _, e := range cfg.Environments {
		out.Environments = append(out.Environments, validateEnvSummary{Name: e.Name, Branch: e.Branch, Mode: e.Mode, Replicas: e.Replicas, Listen: e.Listen})
	}
	if o.output.json() {
		return writeJSONTo(stdout, out)
	}
	reg := cfg.Registry.Ref
	if reg == "" {
		reg = "embedded"
	}
	fmt.Fprintf(stdout, "%s: valid\napp %s from %s, registry %s, runtime %s\n", o.configPath, cfg.App, cfg.Repo.URL, reg, cfg.Runtime)
	for _, e := range out.Environments {
		var where []string
		if e.Listen != "" {
			where = append(where, "on "+e.Listen)
		}
		fmt.Fprintf(stdout, "  %-8s tracks %s (%s), %d replicas %s\n", e.Name, e.Branch, e.Mode, e.Replicas, strings.Join(where, " "))
	}
	return nil
}
