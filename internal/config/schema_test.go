package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSchemaErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	tests := []parseErrorCase{
		{"bad paths", head + "schema:\n  migrations:\n    - \"\"\n    - /db/migrations\n    - ../other/migrations\n    - db/[x\n    - db\\sql\n    - db/migrations\n    - db/migrations/\n",
			[]string{
				`f.yaml:6: schema.migrations[0]: is empty: name a directory of the repository holding NNNN_name.sql files, such as db/migrations`,
				`f.yaml:7: schema.migrations[1]: "/db/migrations" is absolute: write it relative to the repository's root, such as db/migrations`,
				`f.yaml:8: schema.migrations[2]: "../other/migrations" is outside the repository: migrations are read from the commit being built`,
				`f.yaml:9: schema.migrations[3]: "db/[x" is not a valid glob (syntax error in pattern): escape [, ] and \ or fix the pattern`,
				`f.yaml:10: schema.migrations[4]: "db\\sql" uses \: write the path with / between its parts`,
				`f.yaml:12: schema.migrations[6]: "db/migrations/" is listed twice: remove one`,
			}},
	}
	checkParseErrors(t, tests)
}

func TestSchemaParse(t *testing.T) {
	const file = "app: demo\nrepo:\n  url: ./app.git\nschema:\n  migrations:\n    - internal/store/migrations/*\n"
	c, err := Parse("f.yaml", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"internal/store/migrations/*"}, c.Schema.Migrations); diff != "" {
		t.Errorf("migrations (-want +got):\n%s", diff)
	}
	if !c.Schema.Enabled() {
		t.Error("Enabled() = false with migrations listed")
	}
}
