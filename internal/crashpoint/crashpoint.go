// Package crashpoint lets tests kill slipway at a named step of its work.
//
// Hit(name) does nothing unless the environment variable SLIPWAY_CRASH_AT
// is set; only tests set it. When it names the point, the process kills
// itself with SIGKILL there, as a crash or a `kill -9` would, so that a
// test can start it again and check what it makes of the state it left.
//
// SLIPWAY_CRASH_AT is `[SCOPE/]NAME[#N]`, or `@FILE`:
//
//   - NAME is the point, as passed to Hit (Points lists them all);
//   - #N kills at the N-th hit of the point (default the first);
//   - SCOPE/ limits it to a process of that scope (SetScope): a local
//     supervisor's scope is its environment, so `prod/supervisor.replica.ready`
//     kills only prod's supervisor. Without a scope, a point hits only in a
//     process that has none (slipway serve, the CLI);
//   - @FILE reads the specification from FILE at every hit, so that a test
//     can arm a point in processes already running (a supervisor inherits
//     the variable from the slipway that started it). Hits are counted from
//     the moment a process first sees the file's current content; an
//     empty or missing file arms nothing.
//
// With SLIPWAY_CRASH_RECORD set to a file path, the crash happens once
// across all processes that share the variables: the first to reach the
// point creates the file (exclusively) and writes the specification and
// its pid into it before it dies; any later process finds the file and goes
// on. A test waits for the file to know that the crash happened, and
// removes it to arm the next point.
package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The environment variables Hit reads.
const (
	EnvAt     = "SLIPWAY_CRASH_AT"
	EnvRecord = "SLIPWAY_CRASH_RECORD"
)

var (
	once  sync.Once
	at    string // SLIPWAY_CRASH_AT as it was at the first hit
	mu    sync.Mutex
	scope string
	seen  string // the specification hits are counted for
	want  target
	hits  int
)

type target struct {
	scope, name string
	n           int
}

// parse reads `[SCOPE/]NAME[#N]`; ok is false for an empty or malformed one.
func parse(spec string) (t target, ok bool) {
	spec = strings.TrimSpace(spec)
	if s, rest, found := strings.Cut(spec, "/"); found {
		t.scope, spec = s, rest
	}
	t.n = 1
	if name, n, found := strings.Cut(spec, "#"); found {
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			return target{}, false
		}
		spec, t.n = name, v
	}
	t.name = spec
	return t, t.name != ""
}

// SetScope names this process for SLIPWAY_CRASH_AT's SCOPE/ (a local
// supervisor calls it with its environment's name).
func SetScope(s string) {
	mu.Lock()
	defer mu.Unlock()
	scope = s
}

// Hit is a named crash point: see the package's documentation. Without
// SLIPWAY_CRASH_AT, it returns at once.
func Hit(name string) {
	once.Do(func() { at = os.Getenv(EnvAt) })
	if at == "" {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	spec := at
	if file, ok := strings.CutPrefix(at, "@"); ok {
		b, err := os.ReadFile(file)
		if err != nil {
			return
		}
		spec = strings.TrimSpace(string(b))
	}
	if spec != seen {
		seen, hits = spec, 0
		t, ok := parse(spec)
		if !ok && spec != "" {
			fmt.Fprintf(os.Stderr, "slipway: %s: %q is not [SCOPE/]NAME[#N]\n", EnvAt, spec)
		}
		want = t
	}
	if want.name == "" || want.name != name || want.scope != scope {
		return
	}
	hits++
	if hits != want.n {
		return
	}
	if path := os.Getenv(EnvRecord); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return // crashed here once already, or cannot say so: go on
		}
		fmt.Fprintf(f, "%s %d\n", spec, os.Getpid())
		f.Sync()
		f.Close()
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
