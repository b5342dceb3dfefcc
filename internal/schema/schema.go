// Package schema reads what an application's database migrations declare
// about the code they leave able to run, and carries it as image labels.
//
// The convention (docs/migrations.md): migrations are files NNNN_name.sql
// in one directory per SQL dialect, numbered alike in every dialect. A
// migration may declare, in a comment line of its own,
//
//	-- slipway: expand
//	-- slipway: contract K
//
// expand: code built for any earlier schema still runs once it has run
// (what a migration that declares nothing is taken to be); contract K:
// code built for a schema older than K (with fewer than K migrations) can
// no longer run once it has run. An image's schema version is the highest
// migration number it holds; its floor is the highest K its migrations
// declare.
package schema

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Labels of an image's schema (OCI image configuration labels). A CI that
// builds the images (build.kind: image) sets them itself.
const (
	// LabelVersion is the schema version the image's code is built for:
	// the highest migration number it holds ("0" with no migrations).
	LabelVersion = "dev.slipway.schema.version"
	// LabelFloor is the oldest schema version code must be built for to
	// run once the image's migrations ran: the highest contract K of its
	// migrations ("0": every older image still runs).
	LabelFloor = "dev.slipway.schema.floor"
	// LabelFloorBy names the migration that declares the floor, such as
	// 0003_drop_date_of_birth; absent when the floor is 0.
	LabelFloorBy = "dev.slipway.schema.floor-by"
)

// ErrInvalid marks migrations, declarations or labels that break the
// convention.
var ErrInvalid = errors.New("migrations break slipway's convention")

// Info is what an image declares about its schema.
type Info struct {
	// Version is the highest migration number.
	Version int
	// Floor is the oldest schema version code must be built for to run
	// once the migrations ran; 0 when every migration expands.
	Floor int
	// FloorBy is the migration that declares Floor (NNNN_name); "" when
	// Floor is 0.
	FloorBy string
}

// Runs reports whether code built for schema version v runs on a database
// whose migrations declare floor.
func Runs(v, floor int) bool { return v >= floor }

// Labels returns the image labels of i.
func (i Info) Labels() map[string]string {
	l := map[string]string{
		LabelVersion: strconv.Itoa(i.Version),
		LabelFloor:   strconv.Itoa(i.Floor),
	}
	if i.FloorBy != "" {
		l[LabelFloorBy] = i.FloorBy
	}
	return l
}

// FromLabels reads the schema labels of an image. ok is false when the
// image has none (built without schema.migrations, or by a CI that does
// not set them); labels that are there but wrong are an error.
func FromLabels(labels map[string]string) (i Info, ok bool, err error) {
	v, hasV := labels[LabelVersion]
	f, hasF := labels[LabelFloor]
	by := labels[LabelFloorBy]
	if !hasV && !hasF && by == "" {
		return Info{}, false, nil
	}
	bad := func(format string, args ...any) (Info, bool, error) {
		return Info{}, false, fmt.Errorf("%w: image labels: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !hasV {
		return bad("%s is set but %s is not: set both (docs/migrations.md)", LabelFloor, LabelVersion)
	}
	if i.Version, err = strconv.Atoi(v); err != nil || i.Version < 0 {
		return bad("%s=%q is not a schema version: give the highest migration number, such as 3", LabelVersion, v)
	}
	if hasF {
		if i.Floor, err = strconv.Atoi(f); err != nil || i.Floor < 0 {
			return bad("%s=%q is not a schema version: give the highest contract K of the migrations, or 0", LabelFloor, f)
		}
	}
	if i.Floor > i.Version {
		return bad("%s=%d is above %s=%d: a migration can only require code built for its own schema or an older one", LabelFloor, i.Floor, LabelVersion, i.Version)
	}
	i.FloorBy = by
	return i, true, nil
}

// Migration is one migration file and its declaration.
type Migration struct {
	Version int
	Name    string // NNNN_name, without .sql
	Path    string // in the repository
	// Declared is how the file declares itself: "" (nothing), "expand"
	// or "contract".
	Declared string
	// Contract is K of "contract K": code built for a schema older than K
	// no longer runs once the migration ran. 0 for an expand.
	Contract int
}

func (m Migration) declaration() string {
	switch m.Declared {
	case "":
		return "nothing"
	case "contract":
		return fmt.Sprintf("contract %d", m.Contract)
	}
	return m.Declared
}

var (
	fileName  = regexp.MustCompile(`^([0-9]+)_[^/]*\.sql$`)
	directive = regexp.MustCompile(`^--\s*slipway\s*:\s*(.*?)\s*$`)
	contractK = regexp.MustCompile(`^contract\s+([0-9]+)$`)
)

// ParseMigration reads the declaration of one migration file at p.
func ParseMigration(p string, text []byte) (Migration, error) {
	base := path.Base(p)
	m := fileName.FindStringSubmatch(base)
	if m == nil {
		return Migration{}, fmt.Errorf("%w: %s: name it NNNN_name.sql, NNNN being its number in the schema's order", ErrInvalid, p)
	}
	v, err := strconv.Atoi(m[1])
	if err != nil || v == 0 {
		return Migration{}, fmt.Errorf("%w: %s: number migrations from 1 (0001_name.sql)", ErrInvalid, p)
	}
	mig := Migration{Version: v, Name: strings.TrimSuffix(base, ".sql"), Path: p}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	first := 0
	for line := 1; sc.Scan(); line++ {
		d := directive.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if d == nil {
			continue
		}
		at := fmt.Sprintf("%s:%d", p, line)
		if first != 0 {
			return Migration{}, fmt.Errorf("%w: %s: a second slipway declaration (the first is on line %d): keep one", ErrInvalid, at, first)
		}
		first = line
		switch k := contractK.FindStringSubmatch(d[1]); {
		case d[1] == "expand":
			mig.Declared = "expand"
		case k != nil:
			n, err := strconv.Atoi(k[1])
			if err != nil || n < 1 {
				return Migration{}, fmt.Errorf("%w: %s: contract %s: K is a schema version from 1 to %d, the oldest one code must be built for to run after this migration", ErrInvalid, at, k[1], v)
			}
			if n > v {
				return Migration{}, fmt.Errorf("%w: %s: contract %d is above the migration's own number %d: code built for schema %d is the newest this migration can require", ErrInvalid, at, n, v, v)
			}
			mig.Declared, mig.Contract = "contract", n
		default:
			return Migration{}, fmt.Errorf("%w: %s: %q is not a declaration slipway knows: write \"-- slipway: expand\" or \"-- slipway: contract K\" (code built for a schema older than K no longer runs after this migration)", ErrInvalid, at, d[0])
		}
	}
	if err := sc.Err(); err != nil {
		return Migration{}, fmt.Errorf("read %s: %w", p, err)
	}
	return mig, nil
}

// Read reads the migrations of the directories that patterns name in fsys
// (the repository at one commit) and returns what they declare, and the
// migrations of the first directory. Every directory must hold the same
// migration numbers with the same declarations (they are dialects of one
// schema).
func Read(fsys fs.FS, patterns []string) (Info, []Migration, error) {
	var dirs []string
	for _, pat := range patterns {
		pat = path.Clean(pat)
		matches, err := fs.Glob(fsys, pat)
		if err != nil {
			return Info{}, nil, fmt.Errorf("%w: schema.migrations %q: %w", ErrInvalid, pat, err)
		}
		n := 0
		for _, m := range matches {
			fi, err := fs.Stat(fsys, m)
			if err != nil || !fi.IsDir() {
				continue
			}
			n++
			if !slices.Contains(dirs, m) {
				dirs = append(dirs, m)
			}
		}
		if n == 0 {
			return Info{}, nil, fmt.Errorf("%w: schema.migrations %q names no directory of the commit: fix the path, or add the directory", ErrInvalid, pat)
		}
	}
	var first []Migration
	for i, dir := range dirs {
		ms, err := readDir(fsys, dir)
		if err != nil {
			return Info{}, nil, err
		}
		if i == 0 {
			first = ms
			continue
		}
		if err := agree(dirs[0], first, dir, ms); err != nil {
			return Info{}, nil, err
		}
	}
	return Summarize(first), first, nil
}

// Summarize returns what migrations, in order, declare together.
func Summarize(ms []Migration) Info {
	var i Info
	for _, m := range ms {
		i.Version = max(i.Version, m.Version)
		if m.Contract > i.Floor {
			i.Floor, i.FloorBy = m.Contract, m.Name
		}
	}
	return i
}

// readDir reads one directory's migrations, in order.
func readDir(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations in %s: %w", dir, err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		p := path.Join(dir, e.Name())
		text, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", p, err)
		}
		m, err := ParseMigration(p, text)
		if err != nil {
			return nil, err
		}
		if other, ok := seen[m.Version]; ok {
			return nil, fmt.Errorf("%w: %s and %s share number %d: give one the next free number", ErrInvalid, other, p, m.Version)
		}
		seen[m.Version] = p
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	return ms, nil
}

// agree checks that two dialects' directories hold the same migrations,
// declared the same way.
func agree(dirA string, a []Migration, dirB string, b []Migration) error {
	byVersion := func(ms []Migration) map[int]Migration {
		out := map[int]Migration{}
		for _, m := range ms {
			out[m.Version] = m
		}
		return out
	}
	ia, ib := byVersion(a), byVersion(b)
	for _, m := range a {
		o, ok := ib[m.Version]
		if !ok {
			return fmt.Errorf("%w: %s has no migration %04d (%s has %s): every dialect's directory needs the same numbers", ErrInvalid, dirB, m.Version, dirA, m.Path)
		}
		if o.Declared != m.Declared || o.Contract != m.Contract {
			return fmt.Errorf("%w: migration %d declares %s in %s but %s in %s: declare it the same in every dialect", ErrInvalid, m.Version, m.declaration(), m.Path, o.declaration(), o.Path)
		}
	}
	for _, m := range b {
		if _, ok := ia[m.Version]; !ok {
			return fmt.Errorf("%w: %s has no migration %04d (%s has %s): every dialect's directory needs the same numbers", ErrInvalid, dirA, m.Version, dirB, m.Path)
		}
	}
	return nil
}
