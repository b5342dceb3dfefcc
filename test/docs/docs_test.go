// Package docs checks that what the documentation says about the tests is
// true.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testName is a test, fuzz target or benchmark named in backquotes.
var testName = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*)`")

// TestReliabilityNamesRealTests: every test docs/reliability.md names is
// defined in the repository, so a renamed or deleted test shows here.
func TestReliabilityNamesRealTests(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "reliability.md"))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w+)\(`).FindAllSubmatch(src, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	names := testName.FindAllSubmatch(doc, -1)
	if len(names) < 20 {
		t.Fatalf("docs/reliability.md names %d tests; it should name every fault's test", len(names))
	}
	for _, m := range names {
		if !defined[string(m[1])] {
			t.Errorf("docs/reliability.md names %s, which no _test.go file defines: rename it there or bring the test back", m[1])
		}
	}
}
