package cli

import (
	"fmt"
	"io"
	"regexp"

	"github.com/spf13/cobra"

	"slipway.dev/slipway/internal/apps"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy/kube"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
)

// renderOptions are the inputs of `slipway render`.
type renderOptions struct {
	clientOptions
	output     outputFlag
	configPath string
	env        string
	image      string
	commit     string
	release    string
	replicas   int
	cfg        *config.Config
}

func newRenderCommand() *cobra.Command {
	o := &renderOptions{output: outputFlag{formats: []string{"yaml", "json"}}}
	cmd := &cobra.Command{
		Use:   "render ENV",
		Short: "Print the Kubernetes objects slipway applies to an environment",
		Long: `Prints the objects the kubernetes runtime applies to ENV (namespace, Service,
Deployment and the configured HorizontalPodAutoscaler, PodDisruptionBudget,
NetworkPolicy and ResourceQuota), exactly as it applies them, for teams that
apply manifests with their own tools (docs/kubernetes.md).

Without --image, the objects are those of ENV's last successful deployment,
asked of the controller (--server; --app, default the configuration's app). With --image (pinned to a digest) and
--commit, the controller is not needed; --release names the version (default:
the short commit) and --replicas the count (default: the configuration's).`,
		Example: `  slipway render prod
  slipway render dev -o json
  slipway render prod --image registry.example/app@sha256:4f1c… --commit 3f2a1bc… --release RC20250601_0930`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(cmd, args); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd, cmd.OutOrStdout())
		},
	}
	o.register(cmd)
	o.output.register(cmd)
	cmd.Flags().StringVar(&o.image, "image", "", "the image, pinned to a digest (REGISTRY/REPO@sha256:…)")
	cmd.Flags().StringVar(&o.commit, "commit", "", "the full commit the image was built from (with --image)")
	cmd.Flags().StringVar(&o.release, "release", "", "the RC name (with --image; default: the short commit)")
	cmd.Flags().IntVar(&o.replicas, "replicas", 0, "the replica count (with --image; default: the configuration's)")
	return cmd
}

func (o *renderOptions) complete(cmd *cobra.Command, args []string) error {
	o.clientOptions.complete(cmd)
	o.configPath = flagValue(cmd, "config")
	o.env = args[0]
	_, cfg, err := loadAppConfig(o.configPath, o.app)
	if err != nil {
		return err
	}
	o.cfg = cfg
	if o.app == "" {
		o.app = cfg.App
	}
	return nil
}

var fullCommitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

func (o *renderOptions) validate() error {
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.app != o.cfg.App {
		return usageErrorf("--app %s: %s configures the app %s; name the configuration of %s with --config", o.app, o.configPath, o.cfg.App, o.app)
	}
	if _, ok := o.cfg.Environment(o.env); !ok {
		return usageErrorf("environment %q is not in %s", o.env, o.configPath)
	}
	if o.image == "" && (o.commit != "" || o.release != "" || o.replicas != 0) {
		return usageErrorf("--commit, --release and --replicas go with --image")
	}
	if o.image != "" && !fullCommitRE.MatchString(o.commit) {
		return usageErrorf("--image needs --commit with the full 40-hex commit the image was built from")
	}
	if o.replicas < 0 {
		return usageErrorf("--replicas %d: at least 1", o.replicas)
	}
	return nil
}

func (o *renderOptions) run(cmd *cobra.Command, w io.Writer) error {
	d, err := o.deployment(cmd)
	if err != nil {
		return err
	}
	images := registry.NewClient(registry.Insecure(o.cfg.Registry.Insecure))
	defer images.Close()
	spec, err := apps.Runtime{Config: o.cfg, Images: images}.SpecFor(cmd.Context(), d)
	if err != nil {
		return err
	}
	s, err := kube.SettingsFor(o.cfg, o.env)
	if err != nil {
		return &UsageError{Err: err}
	}
	objs, err := kube.Render(spec, s)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("render %s: %w", o.env, err)}
	}
	if o.output.json() {
		return kube.WriteJSON(w, objs)
	}
	return kube.WriteYAML(w, objs)
}

// deployment is what to render: the flags' image, or the environment's
// last successful deployment according to the controller.
func (o *renderOptions) deployment(cmd *cobra.Command) (ledger.Deployment, error) {
	if o.image != "" {
		e, _ := o.cfg.Environment(o.env)
		d := ledger.Deployment{Env: o.env, Kind: ledger.KindDeploy, Trigger: "render", Commit: o.commit,
			Image: o.image, ReleaseName: o.release, Replicas: o.replicas}
		if d.Replicas == 0 {
			d.Replicas = e.Replicas
		}
		return d, nil
	}
	h, err := o.client.History(cmd.Context(), o.app, o.env, 50)
	if err != nil {
		return ledger.Deployment{}, fmt.Errorf("ask the controller what %s runs (or give --image and --commit): %w", o.env, err)
	}
	for _, d := range h.Deployments {
		if d.Env == o.env && d.State == ledger.StateSucceeded {
			return d, nil
		}
	}
	return ledger.Deployment{}, fmt.Errorf("%s has no successful deployment yet: give --image and --commit to render one", o.env)
}
