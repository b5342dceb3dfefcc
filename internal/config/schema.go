package config

import (
	"fmt"
	"path"
	"strings"
)

// Schema says where the application's database migrations are, so that
// each image records the schema version it brings and the oldest code
// its migrations still let run (docs/migrations.md). Empty: slipway knows
// nothing of the app's schema and checks nothing.
type Schema struct {
	// Migrations are directories of the repository, relative to its root,
	// holding migrations named NNNN_name.sql; a glob (path.Match syntax,
	// such as internal/store/migrations/*) names several. Directories of
	// several SQL dialects of one schema share their numbering and their
	// declarations.
	Migrations []string `yaml:"migrations,omitempty"`
}

// Enabled reports whether the configuration names migrations.
func (s Schema) Enabled() bool { return len(s.Migrations) > 0 }

// schema checks the app's schema section.
func (v *validator) schema(c *Config) {
	seen := map[string]bool{}
	for i, m := range c.Schema.Migrations {
		f := fmt.Sprintf("schema.migrations[%d]", i)
		clean := path.Clean(m)
		switch {
		case strings.TrimSpace(m) == "":
			v.add(f, "is empty: name a directory of the repository holding NNNN_name.sql files, such as db/migrations")
		case strings.Contains(m, `\`):
			v.add(f, "%q uses \\: write the path with / between its parts", m)
		case path.IsAbs(m):
			v.add(f, "%q is absolute: write it relative to the repository's root, such as %s", m, strings.TrimLeft(m, "/"))
		case clean == ".." || strings.HasPrefix(clean, "../"):
			v.add(f, "%q is outside the repository: migrations are read from the commit being built", m)
		case seen[clean]:
			v.add(f, "%q is listed twice: remove one", m)
		default:
			if _, err := path.Match(clean, ""); err != nil {
				v.add(f, "%q is not a valid glob (%v): escape [, ] and \\ or fix the pattern", m, err)
			}
		}
		seen[clean] = true
	}
}
