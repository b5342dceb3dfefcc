package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"slipway": func() { os.Exit(run()) },
	})
}

// TestScripts runs the sessions in testdata/script: configuration, usage
// and error handling, with no build.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(t, "testdata/script"))
}

// scriptParams are the settings every session shares: the Go and git
// environment the builds need, and the commands that make the app's
// repository.
func scriptParams(t *testing.T, dir string) testscript.Params {
	goEnv := goEnvironment(t)
	return testscript.Params{
		Dir: dir,
		Setup: func(e *testscript.Env) error {
			for k, v := range goEnv {
				e.Setenv(k, v)
			}
			e.Setenv("GIT_AUTHOR_NAME", "Slipway Test")
			e.Setenv("GIT_AUTHOR_EMAIL", "test@slipway.dev")
			e.Setenv("GIT_COMMITTER_NAME", "Slipway Test")
			e.Setenv("GIT_COMMITTER_EMAIL", "test@slipway.dev")
			e.Setenv("GIT_AUTHOR_DATE", "2026-03-01T12:00:00Z")
			e.Setenv("GIT_COMMITTER_DATE", "2026-03-01T12:00:00Z")
			e.Setenv("OTEL_TRACES_EXPORTER", "none")
			// No controller answers: a session never talks to one that
			// happens to run on this machine.
			e.Setenv("SLIPWAY_SERVER", "http://127.0.0.1:1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkapp":     mkapp,
			"gitcommit": gitcommit,
		},
	}
}

// goEnvironment is what go commands run by slipway inside a session need
// (testscript gives sessions an empty HOME).
func goEnvironment(t *testing.T) map[string]string {
	names := []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GOSUMDB", "GOFLAGS", "GOTOOLCHAIN"}
	out, err := exec.Command("go", append([]string{"env"}, names...)...).Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	env := map[string]string{}
	for i, v := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if i < len(names) && v != "" {
			env[names[i]] = v
		}
	}
	return env
}

// mkapp DIR copies the sample birthday-app into DIR as a git repository
// with one commit on master, and sets $COMMIT to that commit.
func mkapp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mkapp DIR")
	}
	src, err := filepath.Abs("../../examples/birthday-app")
	ts.Check(err)
	if _, err := os.Stat(filepath.Join(src, "main.go")); err != nil {
		ts.Fatalf("the sample app examples/birthday-app is missing: %v", err)
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.CopyFS(dir, os.DirFS(src)))
	for _, a := range [][]string{{"init", "-q", "-b", "master"}, {"add", "."}, {"commit", "-q", "-m", "birthday-app"}, {"rev-parse", "HEAD"}} {
		ts.Check(ts.Exec("git", append([]string{"-C", dir}, a...)...))
	}
	ts.Setenv("COMMIT", strings.TrimSpace(ts.ReadFile("stdout")))
}

// gitcommit DIR MESSAGE commits every change in the repository DIR and
// sets $COMMIT to the new commit.
func gitcommit(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: gitcommit DIR MESSAGE")
	}
	dir := ts.MkAbs(args[0])
	for _, a := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", args[1]}, {"rev-parse", "HEAD"}} {
		ts.Check(ts.Exec("git", append([]string{"-C", dir}, a...)...))
	}
	ts.Setenv("COMMIT", strings.TrimSpace(ts.ReadFile("stdout")))
}
