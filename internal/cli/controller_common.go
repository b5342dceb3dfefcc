package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
)

// What the commands that talk to the controller (status, release, rollback,
// history, diff, scale, stop, start, remove, logs ENV, render) share.

// Environment variables the controller's CLI reads.
const (
	envServer = "SLIPWAY_SERVER"
	envToken  = "SLIPWAY_TOKEN"
)

// defaultDataDir is slipway's data directory unless --data-dir says otherwise.
const defaultDataDir = ".slipway"

// clientOptions are the inputs every command that talks to the controller
// shares: where it is, the app to act on, and the client made of them.
type clientOptions struct {
	server  string
	app     string // --app; resolveApp fills it in
	dataDir string
	client  *api.Client
}

// register adds --server and --app to cmd.
func (o *clientOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.server, "server", defaultServer(), "the controller's URL (env "+envServer+")")
	cmd.PersistentFlags().StringVarP(&o.app, "app", "a", "", "the app to act on (default: the controller's only app, or the one whose repository is the origin of the git clone in this directory)")
}

// defaultServer is the controller's URL unless --server says otherwise:
// SLIPWAY_SERVER, else the API's default address.
func defaultServer() string {
	if s := os.Getenv(envServer); s != "" {
		return s
	}
	return "http://" + api.DefaultAddr
}

// complete makes the client, with the token found by findToken.
func (o *clientOptions) complete(cmd *cobra.Command) {
	o.dataDir = flagValue(cmd, "data-dir")
	o.client = api.NewClient(o.server, findToken(o.dataDir))
}

// resolveApp settles which app the command acts on: --app; else the
// controller's only app; else the app whose repository is the origin
// remote of the git clone in the working directory. example is the
// command line to suggest, with APP for the app.
func (o *clientOptions) resolveApp(ctx context.Context, example string) error {
	if o.app != "" {
		return nil
	}
	apps, err := o.client.Apps(ctx)
	if err != nil {
		return err
	}
	var origin string
	if len(apps) > 1 {
		origin = originURL(ctx)
	}
	o.app, err = chooseApp(apps, origin, example)
	return err
}

// chooseApp picks the only app, or the one whose repository is origin.
func chooseApp(apps []api.AppInfo, origin, example string) (string, error) {
	switch len(apps) {
	case 0:
		return "", errors.New("the controller runs no app: check its configuration")
	case 1:
		return apps[0].Name, nil
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if origin != "" {
		want := api.NormalizeRepoURL(origin)
		for _, a := range apps {
			if api.NormalizeRepoURL(a.Repo) == want {
				return a.Name, nil
			}
		}
		return "", usageErrorf("the controller runs several apps (%s) and none has this directory's origin (%s) as its repository: name one with --app, e.g. %s",
			strings.Join(names, ", "), origin, strings.ReplaceAll(example, "APP", names[0]))
	}
	return "", usageErrorf("the controller runs several apps (%s): name one with --app, e.g. %s, or run the command in a clone of the app's repository",
		strings.Join(names, ", "), strings.ReplaceAll(example, "APP", names[0]))
}

// originURL is the origin remote of the git clone the working directory is
// in, a relative path made absolute; "" when there is none.
func originURL(ctx context.Context) string {
	u, err := gitOutput(ctx, "remote", "get-url", "origin")
	if err != nil || u == "" {
		return ""
	}
	if strings.Contains(u, "://") || filepath.IsAbs(u) || isSCPLike(u) {
		return u
	}
	top, err := gitOutput(ctx, "rev-parse", "--show-toplevel")
	if err != nil {
		return u
	}
	return filepath.Join(top, u)
}

// isSCPLike reports whether u is git's [user@]host:path.
func isSCPLike(u string) bool {
	i := strings.Index(u, ":")
	return i > 0 && !strings.Contains(u[:i], "/")
}

// gitOutput runs git in the working directory and returns its trimmed
// output.
func gitOutput(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
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
