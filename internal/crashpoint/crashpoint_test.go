package crashpoint

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want target
		ok   bool
	}{
		{"build.test", target{name: "build.test", n: 1}, true},
		{"build.test#3", target{name: "build.test", n: 3}, true},
		{"prod/supervisor.replica.ready#2", target{scope: "prod", name: "supervisor.replica.ready", n: 2}, true},
		{" deploy.rollout\n", target{name: "deploy.rollout", n: 1}, true},
		{"", target{}, false},
		{"x#0", target{}, false},
		{"x#two", target{}, false},
	} {
		got, ok := parse(tc.spec)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parse(%q) = %+v, %v; want %+v, %v", tc.spec, got, ok, tc.want, tc.ok)
		}
	}
}

// TestMain lets the test run itself as a child that hits points.
func TestMain(m *testing.M) {
	if names := os.Getenv("CRASHPOINT_TEST_HITS"); names != "" {
		SetScope(os.Getenv("CRASHPOINT_TEST_SCOPE"))
		for _, n := range strings.Split(names, ",") {
			Hit(n)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestHitKills(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	run := func(at, scope, hits string, withRecord bool) (killed bool) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CRASHPOINT_TEST_HITS="+hits, "CRASHPOINT_TEST_SCOPE="+scope, EnvAt+"="+at)
		if withRecord {
			cmd.Env = append(cmd.Env, EnvRecord+"="+record)
		}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ws := ee.Sys().(syscall.WaitStatus)
			return ws.Signaled() && ws.Signal() == syscall.SIGKILL
		}
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	for _, tc := range []struct {
		at, scope, hits string
		killed          bool
	}{
		{"", "", "a,b", false},
		{"b", "", "a,b", true},
		{"c", "", "a,b", false},
		{"a#2", "", "a,b", false},
		{"a#2", "", "a,b,a", true},
		{"prod/a", "", "a", false},
		{"prod/a", "dev", "a", false},
		{"prod/a", "prod", "a", true},
		{"a", "prod", "a", false},
	} {
		if got := run(tc.at, tc.scope, tc.hits, false); got != tc.killed {
			t.Errorf("%s=%q, scope %q, hits %s: killed %v, want %v", EnvAt, tc.at, tc.scope, tc.hits, got, tc.killed)
		}
	}

	// Once across processes with a record; the specification from a file.
	spec := filepath.Join(dir, "at")
	if run("@"+spec, "", "a", true) {
		t.Error("killed without a specification file")
	}
	os.WriteFile(spec, []byte("a\n"), 0o644)
	if !run("@"+spec, "", "a", true) {
		t.Error("not killed at the point the file names")
	}
	b, err := os.ReadFile(record)
	if err != nil || !strings.HasPrefix(string(b), "a ") {
		t.Errorf("record: %q, %v", b, err)
	}
	if run("@"+spec, "", "a", true) {
		t.Error("killed a second time although the record exists")
	}
}

// TestPointsAreInTheCode checks Points against the calls of Hit in the
// module: every point listed is reached somewhere, and every point reached
// is listed.
func TestPointsAreInTheCode(t *testing.T) {
	root := filepath.Join("..", "..")
	call := regexp.MustCompile(`(?:crashpoint\.Hit|runLoggedAt)\((?:ctx, )?"([^"]+)"`)
	var inCode []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "examples" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range call.FindAllStringSubmatch(string(b), -1) {
			inCode = append(inCode, m[1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(inCode)
	var listed []string
	for _, p := range Points {
		listed = append(listed, p.Name)
	}
	slices.Sort(listed)
	if diff := cmp.Diff(listed, inCode); diff != "" {
		t.Errorf("crashpoint.Points (-) and the points the code reaches (+) differ:\n%s", diff)
	}
}

// TestPointsAreDocumented checks that docs/reliability.md names every
// crash point.
func TestPointsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "reliability.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Points {
		if !strings.Contains(string(doc), "`"+p.Name+"`") {
			t.Errorf("docs/reliability.md does not name the crash point `%s` (%s)", p.Name, p.Where)
		}
	}
}
