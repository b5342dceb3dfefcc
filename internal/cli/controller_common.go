package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
)

// The commands that talk to the controller (status, release, rollback,
// history, diff, scale, logs ENV) and the ones that run it (serve, demo).

// Environment variables the controller's CLI reads.
const (
	envServer = "SLIPWAY_SERVER"
	envToken  = "SLIPWAY_TOKEN"
)

// defaultDataDir is slipway's data directory unless --data-dir says otherwise.
const defaultDataDir = ".slipway"

// clientFlags are the flags of every command that talks to the controller.
type clientFlags struct {
	server string
	output string
}

func (f *clientFlags) register(cmd *cobra.Command, withOutput bool) {
	def := os.Getenv(envServer)
	if def == "" {
		def = "http://" + api.DefaultAddr
	}
	cmd.Flags().StringVar(&f.server, "server", def, "the controller's URL (env "+envServer+")")
	if withOutput {
		cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	}
}

func (f *clientFlags) validate() error {
	if f.output != "" && f.output != "text" && f.output != "json" {
		return usageErrorf("--output %q: use text or json", f.output)
	}
	return nil
}

func (f *clientFlags) json() bool { return f.output == "json" }

// client returns an API client with the token found by findToken.
func (f *clientFlags) client(cmd *cobra.Command) *api.Client {
	return api.NewClient(f.server, findToken(flagValue(cmd, "data-dir")))
}

// findToken returns the API token: SLIPWAY_TOKEN, else the token file in
// the data directory (--data-dir, else ./.slipway or the nearest parent
// directory's .slipway, else ./slipway-demo/.slipway). "" when none.
func findToken(dataDir string) string {
	if t := strings.TrimSpace(os.Getenv(envToken)); t != "" {
		return t
	}
	var candidates []string
	if dataDir != "" {
		candidates = append(candidates, filepath.Join(dataDir, api.TokenFile))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			candidates = append(candidates, filepath.Join(d, defaultDataDir, api.TokenFile))
			if filepath.Dir(d) == d {
				break
			}
		}
		candidates = append(candidates, filepath.Join(wd, defaultDemoDir, defaultDataDir, api.TokenFile))
	}
	for _, c := range candidates {
		if b, err := os.ReadFile(c); err == nil && strings.TrimSpace(string(b)) != "" {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

// flagValue reads a flag of cmd or its parents ("" when it has none).
func flagValue(cmd *cobra.Command, name string) string {
	if f := cmd.Flags().Lookup(name); f != nil {
		return f.Value.String()
	}
	if f := cmd.InheritedFlags().Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// UsageError is a mistake in how a command was called or configured: exit
// code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error returned by a command to the process's exit code:
// 0 success, 2 usage or configuration error, 1 any other failure. An API
// error answering a request that can never succeed as written is a usage
// error too.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return 2
	}
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeInvalid {
		return 2
	}
	return 1
}

func short(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}
