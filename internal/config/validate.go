package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// dnsLabel is what app and environment names must look like: they become
// image repository names, Kubernetes namespaces and label values.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// namespaceName is a Kubernetes namespace name.
var namespaceName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// envName is what an environment variable name must look like.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the configuration as a whole and returns every problem
// found, each naming the field and what to set it to. The error matches
// ErrInvalid.
func (c *Config) Validate() error { return c.validate(c.prefix) }

// validate is Validate with the field paths of messages led by prefix.
func (c *Config) validate(prefix string) error {
	v := &validator{c: c, prefix: prefix}

	switch {
	case c.App == "":
		v.add("app", "is required: the application's name, such as app: birthday-app")
	case !dnsLabel.MatchString(c.App):
		v.add("app", "%q is not a valid name: use 1-40 lowercase letters, digits and dashes, starting and ending with a letter or digit", c.App)
	}

	switch u := c.Repo.URL; {
	case u == "":
		v.add("repo.url", "is required: the app's git repository, a path or a file://, https:// or ssh:// URL")
	case strings.Contains(u, "://"):
		scheme, _, _ := strings.Cut(u, "://")
		switch scheme {
		case "file", "http", "https", "ssh", "git":
		default:
			v.add("repo.url", "scheme %q is not supported: use a path, file://, https:// or ssh://", scheme)
		}
	}
	if c.Repo.Poll < 0 {
		v.add("repo.poll", "must not be negative")
	}
	if c.Repo.WebhookSecretEnv != "" && !envName.MatchString(c.Repo.WebhookSecretEnv) {
		v.add("repo.webhookSecretEnv", "%q is not an environment variable name", c.Repo.WebhookSecretEnv)
	}

	if strings.TrimSpace(c.Test.Command) == "" && c.Build.Kind != BuildDockerfile {
		v.add("test.command", "is empty: give the test command (default go test ./...), or \"true\" to skip tests on purpose")
	}
	if c.Test.Timeout <= 0 {
		v.add("test.timeout", "must be more than 0, such as 10m")
	}

	if c.Build.Main == "" {
		v.add("build.main", "is empty: give the main package's directory, such as . or ./cmd/server")
	} else if strings.HasPrefix(c.Build.Main, "/") || strings.HasPrefix(c.Build.Main, "..") {
		v.add("build.main", "%q must be a directory inside the repository, such as . or ./cmd/server", c.Build.Main)
	}
	if c.Build.Port < 1 || c.Build.Port > 65535 {
		v.add("build.port", "%d is not a TCP port: use 1-65535, such as 8080", c.Build.Port)
	}
	if c.Build.Timeout <= 0 {
		v.add("build.timeout", "must be more than 0, such as 10m")
	}
	if c.Build.Concurrency < 0 {
		v.add("build.concurrency", concurrencyMsg, c.Build.Concurrency)
	}
	v.buildKind(c.Build)
	v.imageSource(c.Build)

	if c.Registry.Ref != "" {
		if _, err := name.NewRepository(strings.TrimSuffix(c.Registry.Ref, "/") + "/" + nonEmpty(c.App, "app")); err != nil {
			v.add("registry.ref", "%q is not a registry reference: use a host with an optional path, such as ghcr.io/org or localhost:5000 (%v)", c.Registry.Ref, err)
		}
		if strings.Contains(c.Registry.Ref, "://") {
			v.add("registry.ref", "%q has a scheme: write the host without it, such as ghcr.io/org; set insecure: true for plain HTTP", c.Registry.Ref)
		}
	} else if c.Registry.Insecure {
		v.add("registry.insecure", "applies only to a registry named in registry.ref; the embedded registry needs no setting")
	}

	switch c.Runtime {
	case RuntimeLocal, RuntimeKubernetes:
	default:
		v.add("runtime", "%q is not a runtime: use local or kubernetes", c.Runtime)
	}
	if _, err := template.New("namespace").Option("missingkey=error").Parse(c.Kubernetes.Namespace); err != nil || c.Kubernetes.Namespace == "" {
		v.add("kubernetes.namespace", "%q is not a usable template: use something like {{.App}}-{{.Environment}}", c.Kubernetes.Namespace)
	}
	if c.Kubernetes.ProgressDeadline <= 0 {
		v.add("kubernetes.progressDeadline", "must be more than 0, such as 10m")
	}

	if len(c.Environments) == 0 {
		v.add("environments", "is empty: list at least one environment, such as - name: dev")
	}
	names := map[string]int{}
	listens := map[string]string{}
	for i, e := range c.Environments {
		v.environment(i, e, names, listens)
	}
	v.traffic(c.Environments)
	v.freezes(c)
	v.gc(c.GC)
	v.schema(c)
	v.chain(c.Environments, names)
	v.notifications("notifications", c.Notifications, map[string]string{})
	v.release(c)
	return invalid(v.errs)
}

// before names the environment listed before the i-th, for examples in
// messages: dev when there is none.
func (v *validator) before(i int) string {
	if i > 0 && v.c.Environments[i-1].Name != "" {
		return v.c.Environments[i-1].Name
	}
	return "dev"
}

// verifiedOn is the environment a commit must be verified on before the
// controlled environment envs[i] takes it: its RequireVerifiedOn, or the
// environment listed just before it. "" for an automatic environment, and
// for a controlled one listed first without RequireVerifiedOn.
func verifiedOn(envs []Environment, i int) string {
	e := envs[i]
	if e.Mode != ModeControlled {
		return ""
	}
	if e.RequireVerifiedOn == "" && i > 0 {
		return envs[i-1].Name
	}
	return e.RequireVerifiedOn
}

// chain checks how commits flow between environments: every from and
// requireVerifiedOn names another environment of the file, some
// environment deploys a branch, controlled environments have something to
// be verified on and a branch of their own, and no loop keeps commits out.
func (v *validator) chain(envs []Environment, names map[string]int) {
	if len(envs) == 0 {
		return
	}
	type edge struct {
		to          int
		field, verb string
	}
	edges := make([][]edge, len(envs))
	link := func(i int, field, target, verb string) {
		p := fmt.Sprintf("environments[%d].%s", i, field)
		j, ok := names[target]
		switch {
		case !ok:
			v.add(p, "%q is not an environment in this file: name one of %s", target, strings.Join(envNames(envs), ", "))
		case j == i && field == "from":
			v.add(p, "an environment cannot take commits from itself")
		case j == i:
			v.add(p, "an environment cannot require itself")
		default:
			edges[i] = append(edges[i], edge{j, field, verb})
		}
	}
	fedByBranch := false
	controlledBranches := map[string]string{}
	for i, e := range envs {
		p := fmt.Sprintf("environments[%d]", i)
		if e.From != "" {
			link(i, "from", e.From, "takes its commits from")
		}
		if e.Mode == ModeAutomatic && e.From == "" {
			fedByBranch = true // a missing branch is reported already
		}
		if e.Mode != ModeControlled {
			continue
		}
		if on := verifiedOn(envs, i); on != "" {
			link(i, "requireVerifiedOn", on, "requires them verified on")
		} else {
			v.add(p+".requireVerifiedOn", "environment %q is controlled and listed first, so nothing verifies its commits: list it after the environment they must be verified on, or name that environment here, such as requireVerifiedOn: dev", e.Name)
		}
		if e.Branch == "" {
			continue
		}
		if other, dup := controlledBranches[e.Branch]; dup {
			v.add(p+".branch", "%q is also the branch of controlled environment %q: a release to one would be a release to the other; give each controlled environment its own branch", e.Branch, other)
		} else {
			controlledBranches[e.Branch] = e.Name
		}
	}
	if !fedByBranch {
		v.add("environments", "no environment deploys a branch: make one automatic with a branch, such as - name: dev (branch master by default), and feed the others from it")
	}

	// Loops: a depth-first walk; an edge back to an environment still on
	// the walk's stack closes one.
	const (
		unseen = iota
		onStack
		done
	)
	state := make([]int, len(envs))
	var stack []int
	var stackEdges []edge
	reported := map[string]bool{}
	var visit func(i int)
	visit = func(i int) {
		state[i] = onStack
		stack = append(stack, i)
		for _, ed := range edges[i] {
			switch state[ed.to] {
			case unseen:
				stackEdges = append(stackEdges, ed)
				visit(ed.to)
				stackEdges = stackEdges[:len(stackEdges)-1]
			case onStack:
				k := slices.Index(stack, ed.to)
				nodes := slices.Clone(stack[k:])
				loop := append(slices.Clone(stackEdges[k:]), ed)
				key := fmt.Sprint(slices.Sorted(slices.Values(nodes)))
				if reported[key] {
					continue
				}
				reported[key] = true
				// Start from the environment listed first.
				m := slices.Index(nodes, slices.Min(nodes))
				var clauses []string
				for n := range nodes {
					at := (m + n) % len(nodes)
					clauses = append(clauses, fmt.Sprintf("%s %s %s", envs[nodes[at]].Name, loop[at].verb, envs[loop[at].to].Name))
				}
				v.add(fmt.Sprintf("environments[%d].%s", nodes[m], loop[m].field), "%q closes a loop: %s; no commit could ever get in: point one of them at an environment outside the loop",
					envs[loop[m].to].Name, strings.Join(clauses, ", "))
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
	}
	for i := range envs {
		if state[i] == unseen {
			visit(i)
		}
	}
}

// concurrencyMsg is the message for a negative build.concurrency, in a
// file of one app or at the top of a file of several.
const concurrencyMsg = "%d: give how many builds may run at once, at least 1, or leave it out for half the CPUs"

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func envNames(envs []Environment) []string {
	var n []string
	for _, e := range envs {
		n = append(n, e.Name)
	}
	return n
}

type validator struct {
	c      *Config
	prefix string // leads the field paths of messages: apps[1]
	errs   []error
}

// add records a problem with field, at the line the field (or its nearest
// parent) was written on. A field the app inherits from the top of a file
// of several apps is named as it is written there, without the app's
// prefix.
func (v *validator) add(field, format string, args ...any) {
	e := &FieldError{File: v.c.file, Field: join(v.prefix, field), Msg: fmt.Sprintf(format, args...)}
	for p := field; p != ""; {
		if line, ok := v.c.pos[p]; ok {
			e.Line = line
			break
		}
		if line, ok := v.c.inherited[p]; ok {
			e.Line, e.Field = line, field
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	if e.Line == 0 {
		e.Line = v.c.pos[""] // where the app starts, in a file of several
	}
	if e.Line == 0 && v.c.file != "" {
		e.Line = 1
	}
	v.errs = append(v.errs, e)
}

func (v *validator) environment(i int, e Environment, names map[string]int, listens map[string]string) {
	p := fmt.Sprintf("environments[%d]", i)
	switch {
	case e.Name == "":
		v.add(p+".name", "is required, such as name: dev")
	case !dnsLabel.MatchString(e.Name):
		v.add(p+".name", "%q is not a valid name: use 1-40 lowercase letters, digits and dashes", e.Name)
	default:
		if _, dup := names[e.Name]; dup {
			v.add(p+".name", "%q is used by another environment: names must be unique", e.Name)
		}
		names[e.Name] = i
	}
	switch {
	case e.Mode == ModeAutomatic && e.Branch != "" && e.From != "":
		v.add(p+".from", "%q and branch %q both feed environment %q: keep one, branch to deploy every commit of a branch or from to deploy each commit once it is verified on %s", e.From, e.Branch, e.Name, e.From)
	case e.Mode == ModeAutomatic && e.Branch == "" && e.From == "":
		v.add(p+".branch", "is required for environment %q: the git branch it tracks, such as branch: staging; or from: %s to deploy each commit once it is verified on %s", e.Name, v.before(i), v.before(i))
	case e.Mode != ModeAutomatic && e.Branch == "":
		v.add(p+".branch", "is required for environment %q: the git branch it tracks, such as branch: staging", e.Name)
	}
	if e.Branch != "" && (strings.ContainsAny(e.Branch, " ~^:?*[\\") || strings.HasPrefix(e.Branch, "-")) {
		v.add(p+".branch", "%q is not a valid git branch name", e.Branch)
	}
	if e.From != "" && e.Mode == ModeControlled {
		v.add(p+".from", "is for automatic environments: %q is controlled, so it deploys the commits released to its branch once they are verified on requireVerifiedOn; remove from, or set mode: automatic", e.Name)
	}
	if e.RequireVerifiedOn != "" && e.Mode == ModeAutomatic {
		v.add(p+".requireVerifiedOn", "is for controlled environments: %q is automatic; to deploy each commit once it is verified on %s, write from: %s instead of branch", e.Name, e.RequireVerifiedOn, e.RequireVerifiedOn)
	}
	switch e.Mode {
	case ModeAutomatic, ModeControlled:
	default:
		v.add(p+".mode", "%q is not a mode: use automatic (deploy every commit) or controlled (deploy released commits)", e.Mode)
	}
	if e.MinTimeVerified < 0 {
		v.add(p+".minTimeVerified", "must not be negative")
	}
	if e.Listen == "" {
		if v.c.Runtime == RuntimeLocal {
			v.add(p+".listen", "is required for environment %q on the local runtime: its load balancer's address, such as listen: 127.0.0.1:8082", e.Name)
		}
	} else if _, port, err := net.SplitHostPort(e.Listen); err != nil {
		v.add(p+".listen", "%q is not an address: use host:port or :port, such as 127.0.0.1:8081", e.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(p+".listen", "%q has no valid port: use host:port, such as 127.0.0.1:8081", e.Listen)
	} else if other, dup := listens[e.Listen]; dup && n != 0 {
		v.add(p+".listen", "%q is already the address of environment %q: give each environment its own", e.Listen, other)
	} else {
		listens[e.Listen] = e.Name
	}
	if e.URL != "" && !strings.HasPrefix(e.URL, "http://") && !strings.HasPrefix(e.URL, "https://") {
		v.add(p+".url", "%q must start with http:// or https://", e.URL)
	}
	if e.Replicas < 1 {
		v.add(p+".replicas", "%d is too few: run at least 1 replica", e.Replicas)
	}
	for k := range e.Env {
		if !envName.MatchString(k) {
			v.add(p+".env."+k, "%q is not an environment variable name: use letters, digits and _", k)
		}
	}
	for _, f := range []struct{ field, val string }{{"readinessPath", e.ReadinessPath}, {"livenessPath", e.LivenessPath}} {
		if !strings.HasPrefix(f.val, "/") {
			v.add(p+"."+f.field, "%q must be an HTTP path starting with /, such as /readyz", f.val)
		}
	}
	r := e.Rollout
	if r.MaxSurge < 0 {
		v.add(p+".rollout.maxSurge", "must not be negative")
	}
	if r.MaxUnavailable < 0 {
		v.add(p+".rollout.maxUnavailable", "must not be negative")
	}
	if r.MaxSurge == 0 && r.MaxUnavailable == 0 {
		v.add(p+".rollout", "maxSurge and maxUnavailable are both 0, so no replica could ever be replaced: set maxSurge: 1")
	}
	if r.ReadyTimeout <= 0 {
		v.add(p+".rollout.readyTimeout", "must be more than 0, such as 60s")
	}
	if r.GracePeriod < 0 {
		v.add(p+".rollout.gracePeriod", "must not be negative")
	}
	if e.Smoke.Timeout <= 0 {
		v.add(p+".smoke.timeout", "must be more than 0, such as 2m")
	}
	v.frontend(p+".frontend", e.Frontend)
	v.tls(p+".frontend.tls", e)
	v.resources(p+".resources", e.Resources)
	v.secrets(p+".secrets", e)
	k := e.Kubernetes
	if k.Namespace != "" && !namespaceName.MatchString(k.Namespace) {
		v.add(p+".kubernetes.namespace", "%q is not a valid namespace name: lowercase letters, digits and dashes", k.Namespace)
	}
	if a := k.Autoscaling; a.Enabled() {
		if a.MinReplicas < 1 || a.MinReplicas > a.MaxReplicas {
			v.add(p+".kubernetes.autoscaling.minReplicas", "must be between 1 and maxReplicas (%d)", a.MaxReplicas)
		}
		if a.TargetCPUPercent < 1 || a.TargetCPUPercent > 100 {
			v.add(p+".kubernetes.autoscaling.targetCPUPercent", "must be between 1 and 100, such as 80")
		}
	}
	if pdb := k.PodDisruptionBudget; pdb.MinAvailable != "" && pdb.MaxUnavailable != "" {
		v.add(p+".kubernetes.podDisruptionBudget", "set minAvailable or maxUnavailable, not both")
	}
	if k.Quota.Pods < 0 {
		v.add(p+".kubernetes.quota.pods", "must not be negative")
	}
	for j, s := range k.SecretEnv {
		sp := fmt.Sprintf("%s.kubernetes.secretEnv[%d]", p, j)
		if !envName.MatchString(s.Name) {
			v.add(sp+".name", "%q is not an environment variable name", s.Name)
		}
		if s.Secret == "" || s.Key == "" {
			v.add(sp, "needs secret and key: the Secret's name and the key holding the value")
		}
	}
}

// frontend checks an environment's load-balancer limits and trusted proxies.
func (v *validator) frontend(p string, f Frontend) {
	if f.MaxHeaderBytes < 4<<10 {
		v.add(p+".maxHeaderBytes", "%d is too small for real clients: use at least 4096 (default 1048576)", f.MaxHeaderBytes)
	}
	for _, t := range []struct {
		field string
		d     time.Duration
		eg    string
	}{{"headerTimeout", f.HeaderTimeout, "10s"}, {"bodyTimeout", f.BodyTimeout, "60s"}, {"writeTimeout", f.WriteTimeout, "60s"}, {"idleTimeout", f.IdleTimeout, "2m"}} {
		if t.d <= 0 {
			v.add(p+"."+t.field, "must be more than 0, such as %s", t.eg)
		}
	}
	if f.MaxConnections < 1 {
		v.add(p+".maxConnections", "%d: allow at least 1 connection (default 10000)", f.MaxConnections)
	}
	for i, tp := range f.TrustedProxies {
		if _, err := ParseTrustedProxy(tp); err != nil {
			v.add(fmt.Sprintf("%s.trustedProxies[%d]", p, i), "%q is not an address or CIDR range: write it like 10.0.0.0/8 or 192.0.2.7", tp)
		}
	}
}

// ParseTrustedProxy reads an address (192.0.2.7, ::1) or a CIDR range
// (10.0.0.0/8) as a prefix.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
