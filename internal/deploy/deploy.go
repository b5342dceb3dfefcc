// Package deploy defines what the controller asks of a runtime: apply a
// desired state to an environment, report what it serves, stop it, and show
// its logs. Each runtime is a backend in a package of its own (deploy/local,
// deploy/kube); package deploytest holds the conformance suite they all pass.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Backend is a runtime that environments are deployed to.
type Backend interface {
	// Apply brings the environment to spec and returns once every desired
	// replica of it serves. A rollout that fails returns a *RolloutError
	// and leaves the previous version serving. Applying a spec that differs
	// only in Replicas scales the environment, changing only the replicas it
	// must. Replicas 0 stops the environment: every replica is drained and
	// stopped, what routes to it stays (the local load balancer answers 503
	// saying so), and Status reports it Stopped; applying a spec with
	// replicas starts it again.
	Apply(ctx context.Context, spec Spec) error
	// Status reports what the environment serves, or ErrNotDeployed.
	Status(ctx context.Context, env string) (Status, error)
	// Stop removes the environment: its replicas, its load balancer and its
	// desired state (its data is kept). ErrNotDeployed when there is none.
	Stop(ctx context.Context, env string) error
}

// LogSource is a backend that shows the output of an environment's
// replicas, each line prefixed by "[replica] ". With follow, it keeps
// writing new lines until ctx ends.
type LogSource interface {
	Logs(ctx context.Context, env string, follow bool, w io.Writer) error
}

// ErrNotDeployed means the environment has nothing deployed.
var ErrNotDeployed = errors.New("environment is not deployed")

// ErrInvalidSpec means a Spec was refused before anything changed; the
// wrapping error names the field and the fix.
var ErrInvalidSpec = errors.New("invalid deployment spec")

// ErrUnavailable means the runtime stopped answering in the middle of a
// request (the local supervisor died, say): nothing says the spec was
// wrong, and the same request may succeed when tried again.
var ErrUnavailable = errors.New("the runtime stopped answering")

// Isolation says how a backend confines replicas.
type Isolation string

const (
	// IsolationNamespaces: own mount and PID namespaces and a chroot into
	// the image's files (local backend, as root).
	IsolationNamespaces Isolation = "namespaces+chroot"
	// IsolationSandbox: a container made by the local backend, as root:
	// own mount and PID namespaces on the image's files (pivot_root), a
	// user namespace whose root is an unprivileged id of the host, a
	// reduced capability bounding set, no_new_privs, a seccomp filter,
	// and cgroup limits of memory, CPU and processes.
	IsolationSandbox Isolation = "sandbox"
	// IsolationProcess: a plain process of the host, run from the image's
	// files (local backend, when namespaces are not allowed).
	IsolationProcess Isolation = "process"
	// IsolationContainer: a container managed by Kubernetes.
	IsolationContainer Isolation = "container"
)

// Strategy is how a new version replaces the old one, as in a Kubernetes
// rolling update.
type Strategy struct {
	// MaxSurge is how many replicas may run above Replicas during an
	// update (default 1).
	MaxSurge int `json:"maxSurge"`
	// MaxUnavailable is how many of Replicas may be not serving during an
	// update (default 0). MaxSurge and MaxUnavailable cannot both be 0.
	MaxUnavailable int `json:"maxUnavailable"`
	// ReadyTimeout is how long a new replica may take to become ready
	// before the rollout is aborted (default 60s).
	ReadyTimeout time.Duration `json:"readyTimeout"`
	// TerminationGracePeriod is how long a replica has between SIGTERM and
	// SIGKILL (default 10s).
	TerminationGracePeriod time.Duration `json:"terminationGracePeriod"`
}

// Frontend is how an environment's load balancer faces clients (local
// backend).
type Frontend struct {
	MaxHeaderBytes int           `json:"maxHeaderBytes,omitempty"`
	HeaderTimeout  time.Duration `json:"headerTimeout,omitempty"`
	BodyTimeout    time.Duration `json:"bodyTimeout,omitempty"`
	WriteTimeout   time.Duration `json:"writeTimeout,omitempty"`
	IdleTimeout    time.Duration `json:"idleTimeout,omitempty"`
	MaxConnections int           `json:"maxConnections,omitempty"`
	// TrustedProxies are addresses and CIDR ranges whose X-Forwarded-*
	// headers are kept.
	TrustedProxies []string `json:"trustedProxies,omitempty"`
	// TLS, when set, serves HTTPS on ListenAddr.
	TLS *TLS `json:"tls,omitempty"`
}

// TLS is how the local load balancer gets its certificate: from files, or
// from an ACME directory.
type TLS struct {
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ACMEDomains, when set, has certificates obtained and renewed by ACME.
	ACMEDomains   []string `json:"acmeDomains,omitempty"`
	ACMEEmail     string   `json:"acmeEmail,omitempty"`
	ACMEDirectory string   `json:"acmeDirectory,omitempty"`
	ACMECAFile    string   `json:"acmeCAFile,omitempty"`
	// RedirectFrom is a plain-HTTP address that redirects to HTTPS and
	// answers ACME HTTP-01 challenges.
	RedirectFrom string `json:"redirectFrom,omitempty"`
}

// Spec is the desired state of one environment.
type Spec struct {
	Environment string `json:"environment"`
	App         string `json:"app"`
	// Image is pinned to a digest: REGISTRY/REPO@sha256:<64 hex>.
	Image string `json:"image"`
	// Commit is the full (40 hex) commit the image was built from.
	Commit string `json:"commit"`
	// Version is the human label: the RC name, or the short commit.
	Version string `json:"version"`
	// Replicas is how many copies serve; 0 means the environment is
	// stopped.
	Replicas int `json:"replicas"`
	// Port is the port the app listens on (given to it as PORT). The local
	// backend gives each replica a port of its own instead.
	Port int `json:"port"`
	// Env is added to the image's environment.
	Env map[string]string `json:"env,omitempty"`
	// ListenAddr is where the environment's load balancer listens
	// (local backend), e.g. 127.0.0.1:8080.
	ListenAddr string `json:"listenAddr,omitempty"`
	// Frontend bounds what clients may cost the load balancer (local
	// backend); zero fields take the defaults of WithDefaults.
	Frontend      Frontend `json:"frontend,omitzero"`
	ReadinessPath string   `json:"readinessPath"`
	LivenessPath  string   `json:"livenessPath,omitempty"`
	Strategy      Strategy `json:"strategy"`
	// Cause says why this deployment happens (recorded in history).
	Cause string `json:"cause,omitempty"`
	// Resources limit what each replica may use; zero fields are not
	// limited.
	Resources Resources `json:"resources,omitzero"`
	// Secrets are environment variables whose values the runtime reads
	// when it starts replicas, from where each SecretRef says; the spec
	// holds only the references, never the values.
	Secrets map[string]SecretRef `json:"secrets,omitempty"`
	// Annotations are metadata for each replica: the kubernetes backend
	// puts them on the pod template; the local backend has no use for them.
	Annotations map[string]string `json:"annotations,omitempty"`
}

var (
	envNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$`)
	digestRE  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	commitRE  = regexp.MustCompile(`^[0-9a-f]{40}$`)
	envVarRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// WithDefaults returns spec with unset strategy fields at their defaults.
func (s Spec) WithDefaults() Spec {
	if s.Strategy.MaxSurge == 0 && s.Strategy.MaxUnavailable == 0 {
		s.Strategy.MaxSurge = 1
	}
	if s.Strategy.ReadyTimeout == 0 {
		s.Strategy.ReadyTimeout = 60 * time.Second
	}
	if s.Strategy.TerminationGracePeriod == 0 {
		s.Strategy.TerminationGracePeriod = 10 * time.Second
	}
	if s.ReadinessPath == "" {
		s.ReadinessPath = "/readyz"
	}
	f := &s.Frontend
	if f.MaxHeaderBytes == 0 {
		f.MaxHeaderBytes = 1 << 20
	}
	if f.HeaderTimeout == 0 {
		f.HeaderTimeout = 10 * time.Second
	}
	if f.BodyTimeout == 0 {
		f.BodyTimeout = 60 * time.Second
	}
	if f.WriteTimeout == 0 {
		f.WriteTimeout = 60 * time.Second
	}
	if f.IdleTimeout == 0 {
		f.IdleTimeout = 2 * time.Minute
	}
	if f.MaxConnections == 0 {
		f.MaxConnections = 10000
	}
	return s
}

// Validate reports the first thing wrong with spec, wrapping ErrInvalidSpec.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	switch {
	case !envNameRE.MatchString(s.Environment):
		return bad("environment %q: use 1-40 lower-case letters, digits and dashes, starting with a letter", s.Environment)
	case s.App == "":
		return bad("app is empty: name the application")
	case !digestRE.MatchString(s.Image):
		return bad("image %q is not pinned to a digest: use REGISTRY/REPO@sha256:<64 hex>", s.Image)
	case !commitRE.MatchString(s.Commit):
		return bad("commit %q: give the full 40-hex commit the image was built from", s.Commit)
	case s.Version == "":
		return bad("version is empty: give the RC name or the short commit")
	case s.Replicas < 0:
		return bad("replicas %d: give 0 (stopped) or more", s.Replicas)
	case s.Port < 0 || s.Port > 65535:
		return bad("port %d: use 1-65535", s.Port)
	case s.ReadinessPath != "" && !strings.HasPrefix(s.ReadinessPath, "/"):
		return bad("readiness path %q must start with /", s.ReadinessPath)
	case s.LivenessPath != "" && !strings.HasPrefix(s.LivenessPath, "/"):
		return bad("liveness path %q must start with /", s.LivenessPath)
	case s.Strategy.MaxSurge < 0 || s.Strategy.MaxUnavailable < 0:
		return bad("strategy: maxSurge and maxUnavailable cannot be negative")
	case s.Strategy.ReadyTimeout < 0 || s.Strategy.TerminationGracePeriod < 0:
		return bad("strategy: readyTimeout and terminationGracePeriod cannot be negative")
	}
	for _, k := range sortedKeys(s.Env) {
		if !envVarRE.MatchString(k) {
			return bad("env %q is not a valid variable name", k)
		}
	}
	if err := s.validateSecrets(); err != nil {
		return bad("%v", err)
	}
	if r := s.Resources; r.MemoryBytes < 0 || r.MilliCPU < 0 || r.Pids < 0 {
		return bad("resources cannot be negative")
	}
	return nil
}

// validateSecrets checks the names and references of s.Secrets.
func (s Spec) validateSecrets() error {
	names := make([]string, 0, len(s.Secrets))
	for k := range s.Secrets {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		ref := s.Secrets[k]
		switch {
		case !envVarRE.MatchString(k):
			return fmt.Errorf("secret %q is not a valid variable name", k)
		case (ref.Env == "") == (ref.File == ""):
			return fmt.Errorf("secret %s: give either env (a variable of slipway's environment) or file", k)
		case ref.Env != "" && !envVarRE.MatchString(ref.Env):
			return fmt.Errorf("secret %s: env %q is not a valid variable name", k, ref.Env)
		}
		if _, dup := s.Env[k]; dup {
			return fmt.Errorf("%s is both in env and a secret: keep one", k)
		}
	}
	return nil
}

// Digest returns the sha256:… part of Image.
func (s Spec) Digest() string {
	if i := strings.LastIndex(s.Image, "@"); i >= 0 {
		return s.Image[i+1:]
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Resources limit one replica, as a Kubernetes container's limits do.
type Resources struct {
	// MemoryBytes is the most memory a replica may use; over it, it is
	// killed (out of memory) and restarted.
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	// MilliCPU is the CPU time a replica may use, in thousandths of a
	// CPU (500: half a CPU).
	MilliCPU int64 `json:"milliCPU,omitempty"`
	// Pids is how many processes and threads a replica may have.
	Pids int64 `json:"pids,omitempty"`
}

// SecretRef says where the value of a secret environment variable is:
// in an environment variable of slipway's own (Env), or in a file (File).
// One of them is set.
type SecretRef struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// String says where the secret is, never what it is.
func (r SecretRef) String() string {
	if r.File != "" {
		return "file " + r.File
	}
	return "$" + r.Env
}

// Replicas counts an environment's replicas.
type Replicas struct {
	Desired int `json:"desired"`
	Ready   int `json:"ready"`
	// Updated counts replicas running the desired version.
	Updated int `json:"updated"`
}

// Replica is one running copy of the app.
type Replica struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Commit  string `json:"commit"`
	// State is e.g. starting, ready, unready, draining, restarting,
	// crash-looping.
	State    string    `json:"state"`
	Ready    bool      `json:"ready"`
	Restarts int       `json:"restarts"`
	Address  string    `json:"address,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Since    time.Time `json:"since"`
	Message  string    `json:"message,omitempty"`
	// LastExit says how the replica's process last ended, such as
	// "exit status 1" or "killed: out of memory (limit 64 MiB)".
	LastExit string `json:"lastExit,omitempty"`
}

// Status is what an environment serves.
type Status struct {
	Environment string   `json:"environment"`
	Image       string   `json:"image"`
	Digest      string   `json:"digest"`
	Commit      string   `json:"commit"`
	Version     string   `json:"version"`
	Replicas    Replicas `json:"replicas"`
	Healthy     bool     `json:"healthy"`
	// Stopped: the environment was applied with 0 replicas. It is not
	// Healthy and wants no replica.
	Stopped   bool      `json:"stopped,omitempty"`
	Since     time.Time `json:"since"`
	URL       string    `json:"url,omitempty"`
	Isolation Isolation `json:"isolation,omitempty"`
	Instances []Replica `json:"instances,omitempty"`
	// Message explains what is wrong: crash-looping replicas, drift from
	// the desired state, a rollout in progress.
	Message string `json:"message,omitempty"`
}

// RolloutError is a rollout that did not complete: the new version was not
// ready in time or kept crashing. The previous version keeps serving.
type RolloutError struct {
	Environment string `json:"environment"`
	Version     string `json:"version"`
	// Replica names the failing replica.
	Replica string `json:"replica,omitempty"`
	Reason  string `json:"reason"`
	// LastLogs are the failing replica's last lines of output.
	LastLogs []string `json:"lastLogs,omitempty"`
}

func (e *RolloutError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "roll out %s to %s: %s", e.Version, e.Environment, e.Reason)
	if e.Replica != "" {
		fmt.Fprintf(&b, " (replica %s)", e.Replica)
	}
	b.WriteString("; the previous version keeps serving")
	if len(e.LastLogs) > 0 {
		b.WriteString("; its last log lines:")
		for _, l := range e.LastLogs {
			b.WriteString("\n  ")
			b.WriteString(l)
		}
	}
	return b.String()
}
