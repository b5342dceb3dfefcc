package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/apps"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
)

// defaultDemoDir is the demo's workspace unless --dir says otherwise.
const defaultDemoDir = "slipway-demo"

type demoOptions struct {
	dir          string
	devAddr      string
	prodAddr     string
	staging      bool
	stagingAddr  string
	apiAddr      string
	registryAddr string
}

func newDemoCommand() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Set up and run the whole delivery system on this machine with the sample service",
		Long: `Makes a workspace (--dir) holding app.git, a repository with the sample service
birthday-app on master and release; app/, a clone of it for you; slipway.yaml; and
the data directory. Then runs the controller in the foreground: it builds the
app, deploys dev (2 replicas on --dev-addr) and releases to prod (4 replicas on
--prod-addr), prints what runs where and what to try next.

With --staging, a staging environment (1 replica on --staging-addr) sits
between them: it takes each commit once it is verified on dev, the same image,
and prod releases only commits verified on staging.

Ctrl-C stops everything (the controller and every replica). Running it again
resumes the same workspace.`,
		Example: `  slipway demo
  slipway demo --staging
  slipway demo --dir /tmp/demo --prod-addr 127.0.0.1:9080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.dir, "dir", defaultDemoDir, "the workspace directory")
	cmd.Flags().StringVar(&o.devAddr, "dev-addr", "127.0.0.1:8081", "where dev's load balancer listens")
	cmd.Flags().StringVar(&o.prodAddr, "prod-addr", ":8080", "where prod's load balancer listens")
	cmd.Flags().BoolVar(&o.staging, "staging", false, "add a staging environment between dev and prod: dev → staging → prod")
	cmd.Flags().StringVar(&o.stagingAddr, "staging-addr", defaultStagingAddr, "where staging's load balancer listens (with --staging)")
	cmd.Flags().StringVar(&o.apiAddr, "api-addr", api.DefaultAddr, "where the controller's API listens")
	cmd.Flags().StringVar(&o.registryAddr, "registry-addr", registry.DefaultAddr, "where the embedded registry listens")
	return cmd
}

func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	ws, err := demo.Prepare(ctx, demo.Options{Dir: o.dir, DevAddr: o.devAddr, ProdAddr: o.prodAddr})
	if err != nil {
		return err
	}
	if o.staging {
		if err := writeStagingConfig(ws.Config, o); err != nil {
			return err
		}
	}
	if ws.Created {
		fmt.Fprintf(stderr, "demo workspace made in %s\n", ws.Dir)
	} else {
		fmt.Fprintf(stderr, "resuming the demo workspace in %s\n", ws.Dir)
	}
	return runServe(ctx, serveOptions{
		configPath:       ws.Config,
		dataDir:          ws.DataDir,
		apiAddr:          o.apiAddr,
		registryAddr:     o.registryAddr,
		logger:           newLogger(stderr),
		stopEnvironments: true,
		ready: func(ctx context.Context, all *apps.Apps, apiURL string) {
			st, ok := waitForProd(ctx, all.All()[0].Controller)
			if !ok {
				return
			}
			_ = renderStatus(stdout, st, time.Now())
			exe, _ := os.Executable()
			printNextSteps(stdout, ws, apiURL, o, strings.Contains(exe, string(filepath.Separator)+"go-build"))
		},
	})
}

// waitForProd waits until prod runs a release and is healthy.
func waitForProd(ctx context.Context, ctl *pipeline.Controller) (pipeline.Status, bool) {
	for {
		st, err := ctl.Status(ctx)
		if err == nil {
			done := len(st.Environments) > 0
			for _, e := range st.Environments {
				if e.Commit == nil || !e.Healthy || e.Rollout != nil {
					done = false
				}
			}
			if done {
				return st, true
			}
		}
		select {
		case <-ctx.Done():
			return pipeline.Status{}, false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// printNextSteps tells what to try; viaGoRun says this program was started
// by `go run` (so that slipway is not on the PATH).
func printNextSteps(w io.Writer, ws demo.Workspace, apiURL string, o demoOptions, viaGoRun bool) {
	wd := mustGetwd()
	rel, err := filepath.Rel(wd, ws.Clone)
	if err != nil {
		rel = ws.Clone
	}
	relDir, err := filepath.Rel(wd, ws.Dir)
	if err != nil {
		relDir = ws.Dir
	}
	server := ""
	if "http://"+api.DefaultAddr != apiURL {
		server = " --server " + apiURL
	}
	devURL := "http://" + o.devAddr
	pushed, proven := "dev runs it within seconds of its tests passing", "dev"
	if o.staging {
		devURL += ", staging on " + hostURL(o.stagingAddr)
		pushed, proven = "dev runs it within seconds of its tests passing, then staging", "staging"
	}
	fmt.Fprintf(w, `
slipway demo is running: dev on %[1]s, prod on %[2]s, the API on %[3]s.
Open the dashboard at %[3]s/ to watch what runs where, live.

Try it, in another terminal (from %[4]s or below it, so that the CLI finds the API token):

  # the sample service, on prod
  curl -X PUT -d '{"dateOfBirth":"2000-01-02"}' %[2]s/hello/alice
  curl %[2]s/hello/alice

  # change the greeting and push: %[7]s
  cd %[5]s
  grep -rl 'Hello, ' --include='*.go' . | xargs sed -i 's/\([^A-Za-z]\)Hello, /\1Hi, /'
  git commit -qam "Say hi" && git push
  slipway status%[6]s

  # release the same image, proven on %[8]s, to prod; then roll it back
  slipway release%[6]s
  slipway rollback%[6]s
  slipway history%[6]s

Ctrl-C stops everything; run the demo again to resume.
`, devURL, hostURL(o.prodAddr), apiURL, relDir, rel, server, pushed, proven)
	if viaGoRun {
		fmt.Fprintln(w, "(This slipway runs from `go run`: `go install ./cmd/slipway` puts the slipway command on your PATH.)")
	}
}

func hostURL(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		return "http://127.0.0.1" + addr
	}
	return "http://" + addr
}

func mustGetwd() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	return wd
}
