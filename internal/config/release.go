package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ReleasePhase is a command run once per deployment, from the new image's
// own files, with the environment's variables, secrets and DATABASE_URL,
// before any traffic moves to the new version: database migrations, most
// often. It fails → nothing is rolled out and the running version keeps
// serving. Rollbacks and scale changes do not run it.
//
// It is set for the app (release:) and may be overridden per environment
// (environments[].release:), field by field.
type ReleasePhase struct {
	// Command is what runs: a list is the program and its arguments, run as
	// they are (the image needs no shell), such as [/birthday-app, migrate];
	// a string runs through /bin/sh -c, which the image must have. Empty:
	// no release phase.
	Command Command `yaml:"command,omitempty"`
	// Timeout stops the command (SIGTERM, then SIGKILL), which fails the
	// deployment. Default DefaultReleaseTimeout.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Command is a command line as a list: the program, then its arguments.
// Written as a string in the configuration, it is ["/bin/sh", "-c", the
// string].
type Command []string

// DefaultReleaseTimeout bounds a release-phase command whose timeout is not
// set.
const DefaultReleaseTimeout = 10 * time.Minute

// Enabled reports whether the release phase has a command.
func (r ReleasePhase) Enabled() bool { return len(r.Command) > 0 }

// ReleasePhase is the release phase of environment e: e's own command and
// timeout where set, else the app's; the timeout defaults to
// DefaultReleaseTimeout. Its Command is empty when e has none.
func (c *Config) ReleasePhase(e Environment) ReleasePhase {
	r := c.Release
	if e.Release.Enabled() {
		r.Command = e.Release.Command
	}
	if e.Release.Timeout > 0 {
		r.Timeout = e.Release.Timeout
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultReleaseTimeout
	}
	return r
}

var commandType = reflect.TypeFor[Command]()

// decodeCommand sets a Command from a list of strings, or from a string
// (run by /bin/sh -c).
func (d *decoder) decodeCommand(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode {
		v.Set(reflect.ValueOf(Command{"/bin/sh", "-c", n.Value}))
		return
	}
	d.decodeSlice(n, v, path)
}

// release checks the app's release phase and each environment's.
func (v *validator) release(c *Config) {
	v.releasePhase("release", c.Release)
	for i, e := range c.Environments {
		v.releasePhase(fmt.Sprintf("environments[%d].release", i), e.Release)
	}
	if !c.Release.Enabled() && c.Release.Timeout > 0 {
		some := false
		for _, e := range c.Environments {
			some = some || e.Release.Enabled()
		}
		if !some {
			v.add("release.timeout", "is set, but no release.command: give the command to run before each rollout, such as command: [/%s, migrate], or remove the timeout", nonEmpty(c.App, "app"))
		}
	}
}

// releasePhase checks one release: block, at field path p.
func (v *validator) releasePhase(p string, r ReleasePhase) {
	_, written := v.c.pos[p+".command"]
	switch {
	case written && len(r.Command) == 0:
		v.add(p+".command", "is empty: give the program and its arguments, such as command: [/%s, migrate], or remove release.command to run nothing before rollouts", nonEmpty(v.c.App, "app"))
	case len(r.Command) == 3 && r.Command[0] == "/bin/sh" && r.Command[1] == "-c" && strings.TrimSpace(r.Command[2]) == "":
		v.add(p+".command", "is an empty string: give the command, such as command: [/%s, migrate] (a list runs without a shell; a string runs through /bin/sh -c)", nonEmpty(v.c.App, "app"))
	default:
		for i, a := range r.Command {
			if i == 0 && strings.TrimSpace(a) == "" {
				v.add(fmt.Sprintf("%s.command[0]", p), "is empty: the first element is the program to run, such as /%s", nonEmpty(v.c.App, "app"))
			}
			if strings.ContainsRune(a, 0) {
				v.add(fmt.Sprintf("%s.command[%d]", p, i), "holds a NUL byte, which no command line can carry")
			}
		}
	}
	if r.Timeout > 0 && r.Timeout < time.Second {
		v.add(p+".timeout", "%s is too short to run anything: give a duration of a second or more, such as 5m (default %s)", r.Timeout, DefaultReleaseTimeout)
	}
}
