package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReleasePhase checks how the app's release phase and an
// environment's override make each environment's.
func TestReleasePhase(t *testing.T) {
	const y = `app: demo
repo:
  url: ./app.git
release:
  command: [/demo, migrate]
environments:
  - name: dev
  - name: staging
    branch: master
    listen: 127.0.0.1:8090
    release:
      timeout: 30s
  - name: prod
    release:
      command: /demo migrate --verbose
      timeout: 1h
`
	c, err := Parse("f.yaml", strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	want := []ReleasePhase{
		{Command: Command{"/demo", "migrate"}, Timeout: DefaultReleaseTimeout},
		{Command: Command{"/demo", "migrate"}, Timeout: 30 * time.Second},
		{Command: Command{"/bin/sh", "-c", "/demo migrate --verbose"}, Timeout: time.Hour},
	}
	var got []ReleasePhase
	for _, e := range c.Environments {
		got = append(got, c.ReleasePhase(e))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("release phases (-want +got):\n%s", diff)
	}

	none, err := Parse("f.yaml", strings.NewReader("app: demo\nrepo:\n  url: ./app.git\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := none.ReleasePhase(none.Environments[0]); r.Enabled() {
		t.Errorf("no release configured: got %+v", r)
	}
}

// TestReleasePhaseErrors checks what Validate says about release phases
// that cannot run.
func TestReleasePhaseErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	tests := []parseErrorCase{
		{"empty list", head + "release:\n  command: []\n",
			[]string{`f.yaml:5: release.command: is empty: give the program and its arguments, such as command: [/demo, migrate], or remove release.command to run nothing before rollouts`}},
		{"empty string", head + "release:\n  command: \"  \"\n",
			[]string{`f.yaml:5: release.command: is an empty string: give the command, such as command: [/demo, migrate] (a list runs without a shell; a string runs through /bin/sh -c)`}},
		{"empty program", head + "release:\n  command: [\"\", migrate]\n",
			[]string{`f.yaml:5: release.command[0]: is empty: the first element is the program to run, such as /demo`}},
		{"bad timeout", head + "release:\n  command: [/demo, migrate]\n  timeout: soon\n",
			[]string{`f.yaml:6: release.timeout: want a duration such as 30s, 5m or 1h30m, got "soon"`}},
		{"tiny timeout", head + "environments:\n  - name: dev\n    release:\n      command: [/demo, migrate]\n      timeout: 1ms\n",
			[]string{`f.yaml:8: environments[0].release.timeout: 1ms is too short to run anything: give a duration of a second or more, such as 5m (default 10m0s)`}},
		{"timeout without command", head + "release:\n  timeout: 5m\n",
			[]string{`f.yaml:5: release.timeout: is set, but no release.command: give the command to run before each rollout, such as command: [/demo, migrate], or remove the timeout`}},
		{"command of the wrong kind", head + "release:\n  command: {run: migrate}\n",
			[]string{`f.yaml:5: release.command: want a list (lines starting with "- "), got a mapping (key: value lines)`}},
		{"unknown field", head + "release:\n  comand: [/demo, migrate]\n",
			[]string{`f.yaml:5: release.comand: unknown field "comand" in release; did you mean "command"? Known fields: command, timeout`}},
	}
	checkParseErrors(t, tests)
}
