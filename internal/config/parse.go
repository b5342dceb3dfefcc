package config

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FieldError is a mistake in the configuration: where it is and what to do.
type FieldError struct {
	File  string // the file, when known
	Line  int    // 1-based line, 0 when unknown
	Field string // the field's path, such as environments[1].replicas
	Msg   string // what is wrong and what would be right
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrInvalid is wrapped by every error Parse and Validate return for a
// configuration that is wrong (as opposed to one that cannot be read).
var ErrInvalid = errors.New("invalid configuration")

// invalid joins field errors into one error that matches ErrInvalid.
func invalid(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &invalidError{errs: errs}
}

type invalidError struct{ errs []error }

func (e *invalidError) Error() string {
	lines := make([]string, len(e.errs))
	for i, err := range e.errs {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

func (e *invalidError) Unwrap() []error { return append([]error{ErrInvalid}, e.errs...) }

// Parse reads a configuration of one app from r, on top of Default().
// name is the file name used in messages and to resolve a relative
// repository path. Unknown keys, values of the wrong type and missing
// required fields are errors that name name:line and the field; the
// result is validated. A file of several apps (the apps form) is refused:
// read it with ParseSet.
func Parse(name string, r io.Reader) (*Config, error) {
	root, err := readYAML(name, r)
	if err != nil {
		return nil, err
	}
	if k, _ := mappingKey(root, "apps"); k != nil {
		return nil, invalid([]error{&FieldError{File: name, Line: k.Line, Field: "apps",
			Msg: "the file holds several apps, where the file of one app is wanted (app, repo and environments at the top)"}})
	}
	c, errs := parseApp(name, root, nil, nil, "")
	if len(errs) > 0 {
		return nil, invalid(errs)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// readYAML reads r as one YAML document and returns its root node, nil for
// an empty document.
func readYAML(name string, r io.Reader) (*yaml.Node, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, invalid([]error{&FieldError{File: name, Line: yamlErrorLine(err), Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}})
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// mappingKey finds key in the mapping n and returns its key and value
// nodes; nil when n is not a mapping or has no such key.
func mappingKey(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// parseApp decodes the body of one app's configuration, n (nil: empty),
// on top of Default(). With base, the app starts from base's registry,
// runtime and kubernetes, written at the lines in inherited; prefix is the
// app's field path in its file ("apps[1]"), "" for a file of one app.
func parseApp(name string, n *yaml.Node, base *Config, inherited map[string]int, prefix string) (*Config, []error) {
	c := Default()
	c.file = name
	c.pos = map[string]int{}
	c.prefix = prefix
	if base != nil {
		c.Registry, c.Runtime, c.Kubernetes = base.Registry, base.Runtime, base.Kubernetes
		c.inherited = inherited
	}
	d := &decoder{file: name, pos: c.pos, prefix: prefix}
	if n != nil {
		d.decode(n, reflect.ValueOf(c).Elem(), "")
		if prefix != "" {
			c.pos[""] = n.Line
		}
	}
	c.Repo.URL = resolveRepo(name, c.Repo.URL)
	resolveTLSFiles(name, c)
	defaultBuildKind(c)
	return c, d.errs
}

// yamlErrorLine finds "line N" in a yaml.v3 syntax error.
func yamlErrorLine(err error) int {
	s := err.Error()
	i := strings.Index(s, "line ")
	if i < 0 {
		return 0
	}
	s = s[i+len("line "):]
	end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if end > 0 {
		s = s[:end]
	}
	n, _ := strconv.Atoi(s)
	return n
}

type decoder struct {
	file   string
	pos    map[string]int // field path (without prefix) -> line
	prefix string         // put before field paths in messages: apps[1]
	errs   []error
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: n.Line, Field: join(d.prefix, field), Msg: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeFor[time.Duration]()

// decode sets v from n, reporting mistakes against the field path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.pos[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	switch {
	case v.Type() == durationType:
		if !d.scalar(n, path, "a duration such as 30s or 5m") {
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil || dur < 0 {
			d.fail(n, path, "want a duration such as 30s, 5m or 1h30m, got %q", n.Value)
			return
		}
		v.SetInt(int64(dur))
	case v.Type() == commandType:
		d.decodeCommand(n, v, path)
	case v.Kind() == reflect.String:
		if d.scalar(n, path, "a string") {
			v.SetString(n.Value)
		}
	case v.Kind() == reflect.Int:
		if !d.scalar(n, path, "a whole number") {
			return
		}
		i, err := strconv.Atoi(n.Value)
		if err != nil || n.Tag != "!!int" {
			d.fail(n, path, "want a whole number such as 3, got %q", n.Value)
			return
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Bool:
		if !d.scalar(n, path, "true or false") {
			return
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Tag != "!!bool" {
			d.fail(n, path, "want true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case v.Kind() == reflect.Slice:
		d.decodeSlice(n, v, path)
	case v.Kind() == reflect.Map:
		d.decodeMap(n, v, path)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

var kindNames = map[yaml.Kind]string{
	yaml.MappingNode:  "a mapping (key: value lines)",
	yaml.SequenceNode: "a list",
	yaml.ScalarNode:   "a single value",
	yaml.DocumentNode: "a document",
}

func (d *decoder) scalar(n *yaml.Node, path, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got %s", want, kindNames[n.Kind])
		return false
	}
	return true
}

func fieldName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func join(path, name string) string {
	switch {
	case path == "":
		return name
	case name == "":
		return path
	}
	return path + "." + name
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		what := "the configuration"
		if path != "" {
			what = "a mapping"
		}
		d.fail(n, path, "want %s with the fields %s, got %s", what, strings.Join(knownFields(v.Type()), ", "), kindNames[n.Kind])
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		field := join(path, key)
		if seen[key] {
			d.fail(k, field, "defined twice; keep one")
			continue
		}
		seen[key] = true
		idx := fieldIndex(v.Type(), key)
		if idx < 0 {
			known := knownFields(v.Type())
			msg := fmt.Sprintf("unknown field %q", key)
			if in := join(d.prefix, path); in != "" {
				msg += " in " + in
			}
			if s := closest(key, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			msg += " Known fields: " + strings.Join(known, ", ")
			d.fail(k, field, "%s", msg)
			continue
		}
		fv := v.Field(idx)
		if v.Type() == reflect.TypeFor[Config]() && key == "environments" {
			d.decodeEnvironments(val, fv, field)
		} else {
			d.decode(val, fv, field)
		}
		d.pos[field] = k.Line
	}
}

func fieldIndex(t reflect.Type, key string) int {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() && fieldName(f) == key {
			return i
		}
	}
	return -1
}

func knownFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, fieldName(f))
		}
	}
	return names
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list (lines starting with \"- \"), got %s", kindNames[n.Kind])
		return
	}
	if len(n.Content) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, el := range n.Content {
		d.decode(el, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

// decodeEnvironments starts each environment from the defaults for its
// name, so that `- name: prod` alone is the default prod environment, and
// then applies the defaults that depend on the other fields and on the
// environment's place in the list.
func (d *decoder) decodeEnvironments(n *yaml.Node, v reflect.Value, path string) {
	d.pos[path] = n.Line
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list of environments (lines starting with \"- name: \"), got %s", kindNames[n.Kind])
		return
	}
	envs := make([]Environment, len(n.Content))
	for i, el := range n.Content {
		name := ""
		if el.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(el.Content); j += 2 {
				if el.Content[j].Value == "name" && el.Content[j+1].Kind == yaml.ScalarNode {
					name = el.Content[j+1].Value
				}
			}
		}
		envs[i] = DefaultEnvironment(name)
		p := fmt.Sprintf("%s[%d]", path, i)
		d.decode(el, reflect.ValueOf(&envs[i]).Elem(), p)
		// An automatic environment fed by another one tracks no branch:
		// dev's default master goes unless branch was written too.
		if _, written := d.pos[p+".branch"]; envs[i].From != "" && envs[i].Mode == ModeAutomatic && !written {
			envs[i].Branch = ""
		}
	}
	v.Set(reflect.ValueOf(defaultVerifiedOn(envs)))
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of NAME: value lines, got %s", kindNames[n.Kind])
		return
	}
	if len(n.Content) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			d.fail(k, field, "defined twice; keep one")
			continue
		}
		ev := reflect.New(v.Type().Elem()).Elem()
		if val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
			d.fail(val, field, "has no value; write %s: \"\" for an empty one", k.Value)
			continue
		}
		d.decode(val, ev, field)
		m.SetMapIndex(reflect.ValueOf(k.Value), ev)
	}
	v.Set(m)
}

// closest returns the known name nearest to s, if it is a plausible typo.
func closest(s string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(s), strings.ToLower(k)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func encode(w io.Writer, v any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	return enc.Close()
}

// FieldErrors returns the individual mistakes in an error from Parse or
// Validate, in the order they were found.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}
