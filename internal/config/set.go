package config

import (
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"
)

// Set is every app one slipway runs, read from one file: either the file
// of one app (app, repo, environments … at the top), or the apps form:
//
//	registry: {ref: ghcr.io/team}   # registry, runtime and kubernetes:
//	runtime: kubernetes             # defaults every app inherits, field
//	kubernetes: {context: prod}     # by field
//	build: {concurrency: 4}         # builds at once, for all apps
//	apps:
//	  - app: web                    # each entry is the file of one app
//	    repo: {url: ...}
//	  - app: api
//	    repo: {url: ...}
//	    registry: {insecure: true}  # overrides this field only
type Set struct {
	// Apps are the apps, in the file's order, each complete: defaults
	// applied and inherited fields filled in, ready for everything that
	// takes a *Config.
	Apps []*Config
	// Multi reports whether the file is in the apps form.
	Multi bool
	// BuildConcurrency is how many builds run at once, over all apps.
	// ParseSet sets it to build.concurrency, or DefaultBuildConcurrency()
	// when that is left out; 0 in a Set built in code means the same.
	BuildConcurrency int
	// Notifications are the apps form's top-level outgoing webhooks, for
	// the events of every app (see Destinations).
	Notifications []Notification

	file string
	pos  map[string]int // top-level field path -> line (apps form)
}

// setFile is the top level of the apps form. Apps is decoded by parseSet
// itself, app by app; the field is here for the list of known fields.
type setFile struct {
	Apps       []Config   `yaml:"apps"`
	Registry   Registry   `yaml:"registry"`
	Runtime    string     `yaml:"runtime"`
	Kubernetes Kubernetes `yaml:"kubernetes"`
	Build      setBuild   `yaml:"build"`
	// Notifications apply to every app.
	Notifications []Notification `yaml:"notifications"`
}

// setBuild is the top-level build of the apps form.
type setBuild struct {
	Concurrency int `yaml:"concurrency,omitempty"`
}

// LoadSet reads and parses a configuration file of one or several apps.
func LoadSet(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	defer f.Close()
	return ParseSet(path, f)
}

// ParseSet reads a configuration of one app (as Parse does) or of several
// (the apps form) from r, and validates it. Mistakes are reported as Parse
// reports them, with field paths such as apps[1].environments[0].listen.
func ParseSet(name string, r io.Reader) (*Set, error) {
	root, err := readYAML(name, r)
	if err != nil {
		return nil, err
	}
	var s *Set
	var errs []error
	if k, _ := mappingKey(root, "apps"); k != nil {
		s, errs = parseApps(name, root)
	} else {
		var c *Config
		c, errs = parseApp(name, root, nil, nil, "")
		s = &Set{Apps: []*Config{c}, BuildConcurrency: c.Build.Concurrency, file: name, pos: c.pos}
	}
	if len(errs) > 0 {
		return nil, invalid(errs)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.BuildConcurrency == 0 {
		s.BuildConcurrency = DefaultBuildConcurrency()
	}
	return s, nil
}

// parseApps decodes the apps form: the top level's defaults, then each
// app on top of them.
func parseApps(name string, root *yaml.Node) (*Set, []error) {
	s := &Set{Multi: true, file: name, pos: map[string]int{}}
	d := &decoder{file: name, pos: s.pos}
	def := Default()
	top := setFile{Registry: def.Registry, Runtime: def.Runtime, Kubernetes: def.Kubernetes}

	// The top level without apps and the keys that belong to each app,
	// which get a message saying where they go.
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: root.Tag, Line: root.Line, Column: root.Column}
	var appsKey, apps *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], root.Content[i+1]
		switch {
		case k.Value == "apps" && appsKey != nil:
			d.fail(k, "apps", "defined twice; keep one")
			continue
		case k.Value == "apps":
			appsKey, apps = k, val
			continue
		case isAppField(k.Value):
			d.fail(k, k.Value, "belongs to each app in a file of several apps: move it into the apps entries, such as apps[0].%s", k.Value)
			continue
		case k.Value == "build":
			val = d.topBuild(val)
		}
		rest.Content = append(rest.Content, k, val)
	}
	d.decode(rest, reflect.ValueOf(&top).Elem(), "")
	s.pos["apps"] = appsKey.Line
	s.BuildConcurrency = top.Build.Concurrency
	s.Notifications = top.Notifications
	base := &Config{Registry: top.Registry, Runtime: top.Runtime, Kubernetes: top.Kubernetes}
	inherited := map[string]int{}
	for path, line := range s.pos {
		if first, _, _ := strings.Cut(path, "."); first == "registry" || first == "runtime" || first == "kubernetes" {
			inherited[path] = line
		}
	}

	if apps.Kind == yaml.AliasNode {
		apps = apps.Alias
	}
	switch {
	case apps.Kind == yaml.ScalarNode && apps.Tag == "!!null" || apps.Kind == yaml.SequenceNode && len(apps.Content) == 0:
		d.fail(appsKey, "apps", "is empty: list the apps, each written as the file of one app (app, repo, environments …)")
	case apps.Kind != yaml.SequenceNode:
		d.fail(apps, "apps", "want a list of apps (lines starting with \"- app: \"), got %s", kindNames[apps.Kind])
	}
	errs := d.errs
	if apps.Kind != yaml.SequenceNode {
		return s, errs
	}
	for i, el := range apps.Content {
		prefix := fmt.Sprintf("apps[%d]", i)
		c, appErrs := parseApp(name, el, base, inherited, prefix)
		errs = append(errs, appErrs...)
		if line, ok := c.pos["build.concurrency"]; ok {
			errs = append(errs, &FieldError{File: name, Line: line, Field: prefix + ".build.concurrency",
				Msg: "is set once for all apps in a file of several apps: move it to the top level, build: {concurrency: N} beside apps"})
		}
		s.Apps = append(s.Apps, c)
	}
	return s, errs
}

// isAppField reports whether key is a field of the file of one app that
// the apps form keeps in each app, not at the top (app, repo, test,
// environments).
func isAppField(key string) bool {
	return fieldIndex(reflect.TypeFor[Config](), key) >= 0 && fieldIndex(reflect.TypeFor[setFile](), key) < 0
}

// topBuild reports the keys of the top-level build that belong to each
// app's build, and returns the mapping without them.
func (d *decoder) topBuild(n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return n
	}
	out := *n
	out.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Value != "concurrency" && fieldIndex(reflect.TypeFor[Build](), k.Value) >= 0 {
			d.fail(k, "build."+k.Value, "belongs to each app's build in a file of several apps: move it there, such as apps[0].build.%s; the top-level build holds only concurrency", k.Value)
			continue
		}
		out.Content = append(out.Content, k, n.Content[i+1])
	}
	return &out
}

// App returns the app of the given name.
func (s *Set) App(name string) (*Config, bool) {
	for _, c := range s.Apps {
		if c.App == name {
			return c, true
		}
	}
	return nil, false
}

// Names returns the apps' names in the file's order.
func (s *Set) Names() []string {
	names := make([]string, len(s.Apps))
	for i, c := range s.Apps {
		names[i] = c.App
	}
	return names
}

// Validate checks every app (field paths led by apps[i] in the apps form)
// and what apps must not share: a name, a listen address (local
// runtime), a Kubernetes namespace of the same cluster. A mistake in a
// field every app inherits is reported once. The error matches
// ErrInvalid.
func (s *Set) Validate() error {
	var errs []error
	seen := map[string]bool{}
	keep := func(err error) {
		for _, fe := range FieldErrors(err) {
			if k := fe.Error(); !seen[k] {
				seen[k] = true
				errs = append(errs, fe)
			}
		}
	}
	top := &validator{c: &Config{file: s.file, pos: s.pos}}
	if len(s.Apps) == 0 {
		top.add("apps", "is empty: list the apps, each written as the file of one app (app, repo, environments …)")
	}
	if s.BuildConcurrency < 0 {
		top.add("build.concurrency", concurrencyMsg, s.BuildConcurrency)
	}
	global := map[string]string{}
	top.notifications("notifications", s.Notifications, global)
	keep(invalid(top.errs))
	vs := make([]*validator, len(s.Apps))
	for i, c := range s.Apps {
		vs[i] = &validator{c: c, prefix: s.prefix(i)}
		keep(c.validate(vs[i].prefix))
		vs[i].globalClash(c.Notifications, global)
	}
	s.conflicts(vs)
	for _, v := range vs {
		keep(invalid(v.errs))
	}
	return invalid(errs)
}

// prefix is the field path of the i-th app.
func (s *Set) prefix(i int) string {
	if !s.Multi {
		return ""
	}
	return "apps[" + strconv.Itoa(i) + "]"
}

// conflicts records, with the later app's validator, what two apps share
// and must not.
func (s *Set) conflicts(vs []*validator) {
	type where struct {
		app, env    int
		field, addr string
	}
	names := map[string]int{}
	var addrs []where
	spaces := map[[3]string]where{} // kubeconfig, context, namespace
	for i, c := range s.Apps {
		v := vs[i]
		if j, dup := names[c.App]; dup && c.App != "" {
			// Its namespaces and image repository are the other app's
			// too: one message says so.
			v.add("app", "%q is also the name of %s: give each app its own name; it names the app's image repository (REGISTRY/%s), its data and its namespaces", c.App, s.prefix(j), c.App)
			continue
		}
		names[c.App] = i
		for ei, e := range c.Environments {
			envPath := fmt.Sprintf("environments[%d]", ei)
			if c.Runtime == RuntimeLocal {
				for _, a := range []struct{ field, addr string }{{"listen", e.Listen}, {"frontend.tls.redirectFrom", e.Frontend.TLS.RedirectFrom}} {
					if a.addr == "" {
						continue
					}
					here := where{i, ei, envPath + "." + a.field, a.addr}
					for _, o := range addrs {
						if o.app != i && sameAddress(a.addr, o.addr) {
							other := s.Apps[o.app]
							v.add(here.field, "%q is also where app %q environment %q listens (%s %q): give each environment of each app its own address",
								a.addr, other.App, other.Environments[o.env].Name, join(s.prefix(o.app), o.field), o.addr)
							break
						}
					}
					addrs = append(addrs, here)
				}
			}
			if c.Runtime == RuntimeKubernetes {
				ns, field, ok := namespace(c, e, envPath)
				if !ok {
					continue
				}
				key := [3]string{c.Kubernetes.Kubeconfig, c.Kubernetes.Context, ns}
				if o, dup := spaces[key]; dup && o.app != i {
					other := s.Apps[o.app]
					v.add(field, "makes environment %q's namespace %q, which is also that of app %q environment %q in the same cluster: give each app's environments namespaces of their own, such as with the default {{.App}}-{{.Environment}}",
						e.Name, ns, other.App, other.Environments[o.env].Name)
				} else if !dup {
					spaces[key] = where{app: i, env: ei, field: field}
				}
			}
		}
	}
}

// namespace is the Kubernetes namespace of environment e of c, and the
// field it comes from: the environment's own kubernetes.namespace, or the
// template kubernetes.namespace. ok is false when the template does not
// work, which Validate reports already.
func namespace(c *Config, e Environment, envPath string) (ns, field string, ok bool) {
	if e.Kubernetes.Namespace != "" {
		return e.Kubernetes.Namespace, envPath + ".kubernetes.namespace", true
	}
	t, err := template.New("namespace").Option("missingkey=error").Parse(c.Kubernetes.Namespace)
	if err != nil {
		return "", "", false
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ App, Environment string }{c.App, e.Name}); err != nil {
		return "", "", false
	}
	return strings.ToLower(b.String()), "kubernetes.namespace", true
}

// sameAddress reports whether two listen addresses would take the same
// port: the same port (not 0), and the same host or either host all of
// the machine's addresses.
func sameAddress(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp || ap == "0" {
		return false
	}
	return ah == bh || unspecifiedHost(ah) || unspecifiedHost(bh)
}

// WriteSet renders a Set to w as YAML: the file of its one app, or the
// apps form with every app written out in full.
func WriteSet(w io.Writer, s *Set) error {
	if !s.Multi && len(s.Apps) == 1 {
		return Write(w, s.Apps[0])
	}
	return encode(w, struct {
		Build setBuild  `yaml:"build,omitempty"`
		Apps  []*Config `yaml:"apps"`
	}{setBuild{s.BuildConcurrency}, s.Apps})
}
