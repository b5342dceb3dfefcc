// Package config is slipway's configuration: the slipway.yaml schema, its
// defaults, a strict parser that reports mistakes with file:line, and
// validation that names the field and the fix.
package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// DefaultFile is the configuration file slipway reads when none is named.
const DefaultFile = "slipway.yaml"

// Runtimes slipway can deploy to.
const (
	RuntimeLocal      = "local"
	RuntimeKubernetes = "kubernetes"
)

// Environment modes: how a new commit reaches an environment.
const (
	// ModeAutomatic deploys every new commit of the branch (dev), or,
	// with From, every commit verified on another environment (staging).
	ModeAutomatic = "automatic"
	// ModeControlled deploys only commits that pass the release preflight:
	// a fast-forward of the previous release, contained in master and
	// verified on the environment named by RequireVerifiedOn (prod).
	ModeControlled = "controlled"
)

// Config is the whole of slipway.yaml.
type Config struct {
	// App is the application's name: the image repository's last path
	// element and the title label. Required.
	App string `yaml:"app"`
	// Repo is the application's git repository. Required.
	Repo Repo `yaml:"repo"`
	// Test is how the application is tested before it is built.
	Test Test `yaml:"test"`
	// Build is what is built into the image.
	Build Build `yaml:"build"`
	// Registry is where images are pushed.
	Registry Registry `yaml:"registry"`
	// Runtime is where environments run: "local" (default) or "kubernetes".
	Runtime string `yaml:"runtime"`
	// Kubernetes configures the kubernetes runtime.
	Kubernetes Kubernetes `yaml:"kubernetes"`
	// Environments are the deployment targets, in pipeline order.
	Environments []Environment `yaml:"environments"`
	// Notifications are the outgoing webhooks of the app's events; in a
	// file of several apps, the top-level ones apply to every app as well.
	Notifications []Notification `yaml:"notifications,omitempty"`
	// Freeze is the app's freeze windows (freeze.go): they hold every
	// environment, or those a window names.
	Freeze Freeze `yaml:"freeze,omitempty"`
	// GC is the garbage collection of the app's images (gc.go).
	GC GC `yaml:"gc,omitempty"`
	// Release is the app's release phase (release.go): a command run from
	// the new image before each rollout to it.
	Release ReleasePhase `yaml:"release,omitempty"`
	// Schema is where the app's database migrations are (schema.go): each
	// image then records its schema version, and releases that would
	// strand a rollback are refused.
	Schema Schema `yaml:"schema,omitempty"`

	file string         // the file Parse read, for error positions
	pos  map[string]int // field path -> line in file; "": the app's first line in a file of several
	// prefix is the app's field path in a file of several apps, such as
	// apps[1]; "" in a file of one app.
	prefix string
	// inherited holds the lines of the fields of a file of several apps
	// that every app inherits (registry, runtime, kubernetes), by their
	// path at the top of the file.
	inherited map[string]int
}

// Repo is the application's git repository.
type Repo struct {
	// URL is a local path (relative paths are relative to the configuration
	// file), or a file://, https://, http://, ssh:// or scp-like
	// (git@host:path) URL.
	URL string `yaml:"url"`
	// Poll is how often the controller fetches the repository to notice new
	// commits. Default 2s for a local repository, 30s for a remote one.
	Poll time.Duration `yaml:"poll,omitempty"`
	// WebhookSecretEnv names the environment variable holding the secret
	// that push webhooks (GitHub, GitLab, Gitea) are signed with. Empty:
	// webhooks are not accepted.
	WebhookSecretEnv string `yaml:"webhookSecretEnv,omitempty"`
}

// Test is the application's test step.
type Test struct {
	// Command runs in a clean checkout of the commit through /bin/sh -c.
	// Default "go test ./...". An empty string after parsing is an error;
	// use "true" to skip tests on purpose.
	Command string `yaml:"command"`
	// Timeout stops the test command (SIGTERM, then SIGKILL). Default 10m.
	Timeout time.Duration `yaml:"timeout"`
}

// Build is what slipway compiles into the image.
type Build struct {
	// Main is the Go main package, relative to the repository root.
	// Default ".".
	Main string `yaml:"main"`
	// Port is the TCP port the application listens on: exposed in the
	// image and passed as PORT. Default 8080.
	Port int `yaml:"port"`
	// Timeout bounds the go build. Default 10m.
	Timeout time.Duration `yaml:"timeout"`
	// LDFlags are extra flags for the Go linker (go build -ldflags).
	LDFlags string `yaml:"ldflags,omitempty"`
	// Tags are Go build tags.
	Tags []string `yaml:"tags,omitempty"`
	// Concurrency is how many builds run at once, for every app together.
	// 0: DefaultBuildConcurrency(). In a file of several apps it is set
	// once, in the top-level build, and read from Set.BuildConcurrency.
	Concurrency int `yaml:"concurrency,omitempty"`
	// Kind is how the image is made: BuildGo (default), BuildDockerfile
	// (when any of the Dockerfile fields below is written without a kind)
	// or BuildImage.
	Kind string `yaml:"kind,omitempty"`
	// Dockerfile is the Dockerfile of a BuildDockerfile build, relative to
	// Context. Default "Dockerfile".
	Dockerfile string `yaml:"dockerfile,omitempty"`
	// Context is the build context of a BuildDockerfile build, a directory
	// relative to the repository root. Default ".".
	Context string `yaml:"context,omitempty"`
	// Target is the Dockerfile stage to build. Default: the last one.
	Target string `yaml:"target,omitempty"`
	// Args are the Dockerfile's build arguments (ARG), NAME: value.
	Args map[string]string `yaml:"args,omitempty"`
	// Image says where images built elsewhere come from (kind: image).
	Image ImageSource `yaml:"image,omitempty"`
}

// Build kinds: how an app's image is made.
const (
	// BuildGo compiles the repository's Go main package into slipway's
	// own minimal image.
	BuildGo = "go"
	// BuildDockerfile builds the repository's Dockerfile with buildah.
	BuildDockerfile = "dockerfile"
	// BuildImage takes images that something else built and pushed.
	BuildImage = "image"
)

// DefaultBuildConcurrency is the number of builds run at once when
// build.concurrency is not set: half the CPUs, at least 1.
func DefaultBuildConcurrency() int { return max(1, runtime.NumCPU()/2) }

// Registry is the OCI registry images go to.
type Registry struct {
	// Ref is a registry with an optional path prefix, such as ghcr.io/org,
	// europe-docker.pkg.dev/project/repo or localhost:5000. Images are
	// pushed to Ref/App. Empty: the registry embedded in slipway, listening
	// on --registry-addr (default 127.0.0.1:5000).
	Ref string `yaml:"ref,omitempty"`
	// Insecure allows plain HTTP and unverified TLS to Ref.
	Insecure bool `yaml:"insecure,omitempty"`
}

// Embedded reports whether the registry is the one embedded in slipway.
func (r Registry) Embedded() bool { return r.Ref == "" }

// Kubernetes configures the kubernetes runtime.
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file. Empty: the KUBECONFIG rules, then
	// in-cluster credentials.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Context is the kubeconfig context. Empty: the current context.
	Context string `yaml:"context,omitempty"`
	// Namespace is a text/template for each environment's namespace with
	// {{.App}} and {{.Environment}}. Default "{{.App}}-{{.Environment}}".
	Namespace string `yaml:"namespace"`
	// ProgressDeadline fails a rollout that makes no progress for this
	// long. Default 10m.
	ProgressDeadline time.Duration `yaml:"progressDeadline"`
}

// Environment is one deployment target.
type Environment struct {
	// Name is the environment's name, such as dev or prod. Required.
	Name string `yaml:"name"`
	// Branch is the git branch the environment tracks. Default: master for
	// dev (unless From is set), release for prod; required for other names
	// unless From is set. An automatic environment has Branch or From, not
	// both.
	Branch string `yaml:"branch"`
	// From makes an automatic environment take each commit once it is
	// verified on the environment of that name, as the same image digest,
	// instead of tracking a branch. Not for controlled environments.
	From string `yaml:"from,omitempty"`
	// Mode is "automatic" (every new commit is deployed) or "controlled"
	// (only commits passing the release preflight). Default: controlled for
	// prod, automatic otherwise.
	Mode string `yaml:"mode"`
	// RequireVerifiedOn is the environment a commit must be verified on
	// before a controlled environment takes it. Default: the environment
	// listed just before it (dev for the default prod). Only for controlled
	// environments.
	RequireVerifiedOn string `yaml:"requireVerifiedOn"`
	// MinTimeVerified is how long a commit must have been verified on
	// RequireVerifiedOn before it may be released. Default 0.
	MinTimeVerified time.Duration `yaml:"minTimeVerified,omitempty"`
	// Listen is the address of the environment's load balancer (local
	// runtime). Default 127.0.0.1:8081 for dev, :8080 for prod; required
	// for other names.
	Listen string `yaml:"listen"`
	// URL is where users reach the environment, for status and smoke
	// tests. Default: derived from Listen.
	URL string `yaml:"url,omitempty"`
	// Replicas is the number of replicas. Default 2 for dev, 4 for prod, 1
	// otherwise.
	Replicas int `yaml:"replicas"`
	// Env is extra environment variables for the application.
	Env map[string]string `yaml:"env,omitempty"`
	// DatabaseURL is passed to the application as DATABASE_URL. Empty: on
	// the local runtime, LocalDatabaseURL (the environment's own SQLite
	// database); on kubernetes, none. See Config.DatabaseURL.
	DatabaseURL string `yaml:"databaseURL,omitempty"`
	// ReadinessPath is the HTTP path that answers 2xx when a replica can
	// take traffic. Default /readyz.
	ReadinessPath string `yaml:"readinessPath"`
	// LivenessPath is the HTTP path that answers 2xx while a replica is
	// alive. Default /healthz.
	LivenessPath string `yaml:"livenessPath"`
	// Rollout is the rolling-update strategy.
	Rollout Rollout `yaml:"rollout"`
	// Smoke is the smoke test run against the environment after a rollout.
	Smoke Smoke `yaml:"smoke"`
	// Frontend is how the environment's load balancer faces clients (local
	// runtime): limits, timeouts, trusted proxies and TLS.
	Frontend Frontend `yaml:"frontend"`
	// Kubernetes holds settings used only by the kubernetes runtime.
	Kubernetes EnvKubernetes `yaml:"kubernetes"`
	// Resources limit each replica (local runtime). Empty fields take
	// kubernetes.resources.limits, then the defaults of
	// Environment.ReplicaLimits.
	Resources ReplicaResources `yaml:"resources,omitempty"`
	// Secrets are environment variables for the application whose values
	// are read, when replicas are deployed, from slipway's own
	// environment or from files, never written in the configuration
	// (local runtime).
	Secrets map[string]Secret `yaml:"secrets,omitempty"`
	// Freeze is the environment's own freeze windows (freeze.go), beside
	// the app's.
	Freeze Freeze `yaml:"freeze,omitempty"`
	// Release overrides the app's release phase for this environment,
	// field by field (release.go).
	Release ReleasePhase `yaml:"release,omitempty"`
}

// Rollout is a Kubernetes-like rolling-update strategy.
type Rollout struct {
	// MaxSurge is how many replicas above the desired count may exist
	// during an update. Default 1.
	MaxSurge int `yaml:"maxSurge"`
	// MaxUnavailable is how many replicas below the desired count may be
	// unavailable during an update. Default 0.
	MaxUnavailable int `yaml:"maxUnavailable"`
	// ReadyTimeout aborts a rollout whose new replica is not ready in time.
	// Default 60s.
	ReadyTimeout time.Duration `yaml:"readyTimeout"`
	// GracePeriod is how long a stopping replica has between SIGTERM and
	// SIGKILL. Default 30s.
	GracePeriod time.Duration `yaml:"gracePeriod"`
}

// Smoke is a smoke-test command.
type Smoke struct {
	// Command runs through /bin/sh -c with SLIPWAY_URL set to the
	// environment's URL. Empty: no smoke test.
	Command string `yaml:"command,omitempty"`
	// Timeout stops the command. Default 2m.
	Timeout time.Duration `yaml:"timeout"`
}

// Frontend bounds what one client may cost the local load balancer, and
// says which proxies in front of it are trusted.
type Frontend struct {
	// MaxHeaderBytes bounds a request's line and headers; larger requests
	// get 431. Default 1 MiB.
	MaxHeaderBytes int `yaml:"maxHeaderBytes"`
	// HeaderTimeout is how long a client has to send a request's line and
	// headers. Default 10s.
	HeaderTimeout time.Duration `yaml:"headerTimeout"`
	// BodyTimeout is how long reading a request body may wait for the next
	// bytes from the client. Default 60s.
	BodyTimeout time.Duration `yaml:"bodyTimeout"`
	// WriteTimeout is how long writing a response may wait for the client
	// to take the next bytes. Default 60s.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// IdleTimeout closes a kept-alive connection with no request for this
	// long. Default 2m.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MaxConnections is how many client connections may be open at once;
	// beyond it new ones are closed at once. Default 10000.
	MaxConnections int `yaml:"maxConnections"`
	// TrustedProxies are addresses or CIDR ranges of proxies in front of
	// the load balancer whose X-Forwarded-For, -Proto and -Host are kept.
	// Empty: those headers from clients are replaced.
	TrustedProxies []string `yaml:"trustedProxies,omitempty"`
	// TLS serves the environment over HTTPS.
	TLS TLS `yaml:"tls,omitempty"`
}

// TLS is how an environment's load balancer gets its certificate.
type TLS struct {
	// CertFile and KeyFile are a PEM certificate chain and its key.
	CertFile string `yaml:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty"`
	// ACME gets and renews certificates automatically instead.
	ACME ACME `yaml:"acme,omitempty"`
	// RedirectFrom is an address where plain HTTP is answered with a
	// redirect to HTTPS (and ACME HTTP-01 challenges), such as :80.
	RedirectFrom string `yaml:"redirectFrom,omitempty"`
}

// Enabled reports whether the environment serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.ACME.Enabled() }

// ACME is an ACME account (Let's Encrypt by default) that certificates are
// obtained with, kept in the environment's data directory.
type ACME struct {
	// Domains the certificate is for. Required to use ACME.
	Domains []string `yaml:"domains,omitempty"`
	// Email is the account's contact address.
	Email string `yaml:"email,omitempty"`
	// Directory is the ACME directory URL. Default Let's Encrypt's.
	Directory string `yaml:"directory,omitempty"`
	// CAFile is a PEM file of CAs trusted for the directory's TLS, for a
	// private ACME server. Empty: the system's.
	CAFile string `yaml:"caFile,omitempty"`
}

// Enabled reports whether ACME is configured.
func (a ACME) Enabled() bool { return len(a.Domains) > 0 }

// EnvKubernetes is what the kubernetes runtime adds to an environment.
type EnvKubernetes struct {
	// Namespace overrides the namespace template for this environment.
	Namespace string `yaml:"namespace,omitempty"`
	// Resources are the container's requests and limits.
	Resources Resources `yaml:"resources,omitempty"`
	// Autoscaling creates a HorizontalPodAutoscaler when MaxReplicas > 0.
	Autoscaling Autoscaling `yaml:"autoscaling"`
	// PodDisruptionBudget creates a PodDisruptionBudget when either field
	// is set.
	PodDisruptionBudget PodDisruptionBudget `yaml:"podDisruptionBudget,omitempty"`
	// NetworkPolicy restricts who may reach the environment.
	NetworkPolicy NetworkPolicy `yaml:"networkPolicy,omitempty"`
	// Quota creates a ResourceQuota for the namespace when any field is set.
	Quota Quota `yaml:"quota,omitempty"`
	// SecretEnv are environment variables read from Secrets.
	SecretEnv []SecretEnv `yaml:"secretEnv,omitempty"`
	// ImagePullSecrets name Secrets used to pull the image.
	ImagePullSecrets []string `yaml:"imagePullSecrets,omitempty"`
	// Service is the type and annotations of the environment's Service.
	Service Service `yaml:"service,omitempty"`
	// Ingress routes outside traffic to the Service through an Ingress
	// when any of its fields is set.
	Ingress Ingress `yaml:"ingress,omitempty"`
	// HTTPRoute routes outside traffic to the Service through a Gateway API
	// HTTPRoute when any of its fields is set; not together with Ingress.
	HTTPRoute HTTPRoute `yaml:"httpRoute,omitempty"`
}

// Service types an environment's Service may have.
const (
	ServiceClusterIP    = "ClusterIP"
	ServiceNodePort     = "NodePort"
	ServiceLoadBalancer = "LoadBalancer"
)

// The node-port range of a cluster started with the default
// --service-node-port-range.
const (
	MinNodePort = 30000
	MaxNodePort = 32767
)

// Service is the environment's Kubernetes Service, port 80 to the
// container's http port.
type Service struct {
	// Type is ClusterIP (reachable inside the cluster), NodePort (also on
	// a port of every node) or LoadBalancer (also through the cloud's load
	// balancer). Empty: ClusterIP.
	Type string `yaml:"type,omitempty"`
	// NodePort fixes the node port of a NodePort or LoadBalancer Service,
	// in 30000-32767. Default 0: the cluster picks a free one.
	NodePort int `yaml:"nodePort,omitempty"`
	// Annotations are put on the Service, such as a cloud load balancer's
	// settings.
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// TypeOrDefault is Type, or ClusterIP when it is empty.
func (s Service) TypeOrDefault() string {
	if s.Type == "" {
		return ServiceClusterIP
	}
	return s.Type
}

// Ingress is a networking.k8s.io/v1 Ingress to the environment's Service.
type Ingress struct {
	// ClassName is the IngressClass, such as nginx. Empty: the cluster's
	// default class.
	ClassName string `yaml:"className,omitempty"`
	// Hosts are the host names routed to the Service, one rule each.
	// Empty: one rule for every host.
	Hosts []string `yaml:"hosts,omitempty"`
	// Path is the path prefix routed to the Service. Default /.
	Path string `yaml:"path,omitempty"`
	// TLSSecret is the Secret holding the certificate for Hosts; set, the
	// environment is served over HTTPS.
	TLSSecret string `yaml:"tlsSecret,omitempty"`
	// CertManager asks cert-manager to issue the certificate into
	// TLSSecret.
	CertManager CertManager `yaml:"certManager,omitempty"`
	// Annotations are put on the Ingress, such as an ingress controller's
	// settings.
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Enabled reports whether an Ingress is configured.
func (i Ingress) Enabled() bool {
	return i.ClassName != "" || len(i.Hosts) > 0 || i.Path != "" || i.TLSSecret != "" ||
		i.CertManager.Enabled() || len(i.Annotations) > 0
}

// CertManager names the cert-manager issuer of an Ingress's certificate:
// one of ClusterIssuer and Issuer (an issuer of the environment's
// namespace).
type CertManager struct {
	ClusterIssuer string `yaml:"clusterIssuer,omitempty"`
	Issuer        string `yaml:"issuer,omitempty"`
}

// Enabled reports whether cert-manager is asked for a certificate.
func (c CertManager) Enabled() bool { return c.ClusterIssuer != "" || c.Issuer != "" }

// HTTPRoute is a Gateway API (gateway.networking.k8s.io/v1) HTTPRoute to
// the environment's Service.
type HTTPRoute struct {
	// Gateway is the Gateway the route attaches to. Required.
	Gateway GatewayRef `yaml:"gateway,omitempty"`
	// Hostnames are the host names routed to the Service. Empty: those of
	// the Gateway's listener.
	Hostnames []string `yaml:"hostnames,omitempty"`
	// Path is the path prefix routed to the Service. Default /.
	Path string `yaml:"path,omitempty"`
	// Annotations are put on the HTTPRoute.
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Enabled reports whether an HTTPRoute is configured.
func (h HTTPRoute) Enabled() bool {
	return h.Gateway != GatewayRef{} || len(h.Hostnames) > 0 || h.Path != "" || len(h.Annotations) > 0
}

// GatewayRef names a Gateway and optionally one of its listeners.
type GatewayRef struct {
	Name string `yaml:"name,omitempty"`
	// Namespace is the Gateway's namespace. Empty: the environment's.
	Namespace string `yaml:"namespace,omitempty"`
	// SectionName is the Gateway's listener to attach to. Empty: all that
	// admit the route.
	SectionName string `yaml:"sectionName,omitempty"`
}

// Resources are Kubernetes resource requests and limits, as quantities
// ("250m", "128Mi").
type Resources struct {
	Requests ResourceList `yaml:"requests,omitempty"`
	Limits   ResourceList `yaml:"limits,omitempty"`
}

// ResourceList is CPU and memory quantities.
type ResourceList struct {
	CPU    string `yaml:"cpu,omitempty"`
	Memory string `yaml:"memory,omitempty"`
}

// Autoscaling is a HorizontalPodAutoscaler on CPU utilisation.
type Autoscaling struct {
	MinReplicas int `yaml:"minReplicas,omitempty"`
	MaxReplicas int `yaml:"maxReplicas,omitempty"`
	// TargetCPUPercent is the average CPU utilisation to keep. Default 80.
	TargetCPUPercent int `yaml:"targetCPUPercent"`
}

// Enabled reports whether autoscaling is configured.
func (a Autoscaling) Enabled() bool { return a.MaxReplicas > 0 }

// PodDisruptionBudget is a count or a percentage ("1", "50%").
type PodDisruptionBudget struct {
	MinAvailable   string `yaml:"minAvailable,omitempty"`
	MaxUnavailable string `yaml:"maxUnavailable,omitempty"`
}

// Enabled reports whether a PodDisruptionBudget is configured.
func (p PodDisruptionBudget) Enabled() bool { return p.MinAvailable != "" || p.MaxUnavailable != "" }

// NetworkPolicy restricts ingress to the environment's pods.
type NetworkPolicy struct {
	// InternalOnly admits traffic only from inside the cluster.
	InternalOnly bool `yaml:"internalOnly,omitempty"`
}

// Quota is a ResourceQuota for the environment's namespace.
type Quota struct {
	CPU    string `yaml:"cpu,omitempty"`
	Memory string `yaml:"memory,omitempty"`
	Pods   int    `yaml:"pods,omitempty"`
}

// Enabled reports whether a quota is configured.
func (q Quota) Enabled() bool { return q.CPU != "" || q.Memory != "" || q.Pods > 0 }

// SecretEnv is an environment variable read from a key of a Secret.
type SecretEnv struct {
	Name   string `yaml:"name"`
	Secret string `yaml:"secret"`
	Key    string `yaml:"key"`
}

// Default returns the configuration slipway uses for everything a file
// leaves out. App and Repo.URL have no default.
func Default() *Config {
	return &Config{
		Test:         Test{Command: "go test ./...", Timeout: 10 * time.Minute},
		Build:        Build{Main: ".", Port: 8080, Timeout: 10 * time.Minute, Kind: BuildGo},
		Runtime:      RuntimeLocal,
		Kubernetes:   Kubernetes{Namespace: "{{.App}}-{{.Environment}}", ProgressDeadline: 10 * time.Minute},
		Environments: defaultVerifiedOn([]Environment{DefaultEnvironment("dev"), DefaultEnvironment("prod")}),
	}
}

// DefaultEnvironment returns the defaults for an environment of the given
// name: dev and prod have their own; any other name gets the common ones
// and must set branch (or from) and listen itself. RequireVerifiedOn
// depends on where the environment is listed, so it is left empty: Parse
// and Default set it (see defaultVerifiedOn), and Validate reads an empty
// one of a controlled environment the same way.
func DefaultEnvironment(name string) Environment {
	e := Environment{
		Name:          name,
		Mode:          ModeAutomatic,
		Replicas:      1,
		ReadinessPath: "/readyz",
		LivenessPath:  "/healthz",
		Rollout:       Rollout{MaxSurge: 1, MaxUnavailable: 0, ReadyTimeout: 60 * time.Second, GracePeriod: 30 * time.Second},
		Smoke:         Smoke{Timeout: 2 * time.Minute},
		Frontend: Frontend{
			MaxHeaderBytes: 1 << 20,
			HeaderTimeout:  10 * time.Second,
			BodyTimeout:    60 * time.Second,
			WriteTimeout:   60 * time.Second,
			IdleTimeout:    2 * time.Minute,
			MaxConnections: 10000,
		},
		Kubernetes: EnvKubernetes{Autoscaling: Autoscaling{TargetCPUPercent: 80}},
	}
	switch name {
	case "dev":
		e.Branch = "master"
		e.Listen = "127.0.0.1:8081"
		e.Replicas = 2
	case "prod":
		e.Branch = "release"
		e.Mode = ModeControlled
		e.Listen = ":8080"
		e.Replicas = 4
	}
	return e
}

// Load reads and parses a configuration file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	defer f.Close()
	return Parse(path, f)
}

// defaultVerifiedOn gives each controlled environment without
// RequireVerifiedOn the environment listed just before it, and returns
// envs.
func defaultVerifiedOn(envs []Environment) []Environment {
	for i := range envs {
		if envs[i].Mode == ModeControlled && envs[i].RequireVerifiedOn == "" && i > 0 {
			envs[i].RequireVerifiedOn = envs[i-1].Name
		}
	}
	return envs
}

// File is the name of the file the configuration was parsed from.
func (c *Config) File() string { return c.file }

// Environment returns the environment of the given name.
func (c *Config) Environment(name string) (Environment, bool) {
	for _, e := range c.Environments {
		if e.Name == name {
			return e, true
		}
	}
	return Environment{}, false
}

// FinalEnvironment is the environment listed last, the end of the
// pipeline: the live tag, release names (RCyyyyMMdd_HHmm) and git release
// tags belong to it. The zero Environment when there is none.
func (c *Config) FinalEnvironment() Environment {
	if len(c.Environments) == 0 {
		return Environment{}
	}
	return c.Environments[len(c.Environments)-1]
}

// EnvTag is the registry tag carried by the image an environment runs:
// env-NAME.
func EnvTag(env string) string { return "env-" + env }

// ImageRepository is the repository images of the app are pushed to:
// Registry.Ref/App, or embeddedAddr/App for the embedded registry.
func (c *Config) ImageRepository(embeddedAddr string) string {
	if c.Registry.Embedded() {
		return embeddedAddr + "/" + c.App
	}
	return strings.TrimSuffix(c.Registry.Ref, "/") + "/" + c.App
}

// PollInterval is Repo.Poll, or its default for the kind of URL.
func (c *Config) PollInterval() time.Duration {
	if c.Repo.Poll > 0 {
		return c.Repo.Poll
	}
	if IsLocalRepo(c.Repo.URL) {
		return 2 * time.Second
	}
	return 30 * time.Second
}

// EnvironmentURL is the URL users reach the environment at: e.URL if set,
// otherwise http:// and Listen (an empty host becomes 127.0.0.1); with
// frontend.tls, https:// and the first ACME domain if there is one.
func (e Environment) EnvironmentURL() string {
	if e.URL != "" {
		return e.URL
	}
	host, port, ok := strings.Cut(e.Listen, ":")
	if !ok {
		return "http://" + e.Listen
	}
	if host == "" || host == "0.0.0.0" || host == "[::]" {
		host = "127.0.0.1"
	}
	if e.Frontend.TLS.Enabled() {
		return tlsURL(e, host, port)
	}
	return "http://" + host + ":" + port
}

// LocalDatabaseURL is the database an environment of the local runtime
// gets when it sets no databaseURL: a SQLite file named after app in the
// environment's data directory. The local runtime replaces $DATA_DIR in
// the application's environment with that directory, as the replica sees
// it.
func LocalDatabaseURL(app string) string { return "sqlite:$DATA_DIR/" + app + ".db" }

// DatabaseURL is what the application gets as DATABASE_URL in e:
// e.DatabaseURL if set, else DATABASE_URL of e.Env if set, else
// LocalDatabaseURL on the local runtime, and nothing ("") on kubernetes,
// which has no per-environment data directory (name a Secret under
// kubernetes.secretEnv instead).
func (c *Config) DatabaseURL(e Environment) string {
	if e.DatabaseURL != "" {
		return e.DatabaseURL
	}
	if u, ok := e.Env["DATABASE_URL"]; ok || c.Runtime == RuntimeKubernetes {
		return u
	}
	return LocalDatabaseURL(c.App)
}

// IsLocalRepo reports whether a repository URL names a path on this
// machine (a plain path or file://).
func IsLocalRepo(u string) bool {
	if strings.HasPrefix(u, "file://") {
		return true
	}
	if strings.Contains(u, "://") {
		return false
	}
	return !isSCPLike(u)
}

// isSCPLike reports whether u is git's scp-like syntax, user@host:path.
func isSCPLike(u string) bool {
	colon := strings.Index(u, ":")
	if colon <= 0 {
		return false
	}
	slash := strings.Index(u, "/")
	return slash < 0 || colon < slash
}

// resolveRepo makes a relative local repository path relative to the
// directory of the configuration file.
func resolveRepo(file, u string) string {
	if u == "" || !IsLocalRepo(u) || strings.HasPrefix(u, "file://") || filepath.IsAbs(u) || file == "" {
		return u
	}
	return filepath.Join(filepath.Dir(file), u)
}

// Write renders a configuration to w as YAML, for `slipway demo` and tests.
func Write(w io.Writer, c *Config) error {
	return encode(w, c)
}
