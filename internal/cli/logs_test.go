package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
)

// BuildLog knows one build per app, of the commit 1a2b3c4d…: its newest.
func (f fakeApp) BuildLog(ctx context.Context, commit string, follow bool, w io.Writer) error {
	f.record("build log %s follow=%t", commit, follow)
	if commit != "latest" && !strings.HasPrefix(strings.Repeat("1a2b3c4d", 5), commit) {
		return fmt.Errorf("no build of %s of commit %s: %w", f.name, commit, ledger.ErrNotFound)
	}
	_, err := fmt.Fprintf(w, "# testing: go test ./...\n# tests passed in 2s\n")
	return err
}

func TestLogsBuild(t *testing.T) {
	t.Chdir(t.TempDir()) // not in a git clone
	server, log := startController(t, "web=https://github.com/example/web.git", "api=git@github.com:example/api.git")
	const whole = "# testing: go test ./...\n# tests passed in 2s\n"
	for _, args := range [][]string{
		{"logs", "build", "--app", "web"},
		{"logs", "build", "1A2B3C4", "-f", "-a", "api"},
	} {
		out, errOut, code := slipway(t, append(args, "--server", server)...)
		if code != 0 || out != whole {
			t.Errorf("%v: exit %d, %q; stderr %s", args, code, out, errOut)
		}
	}
	if diff := cmp.Diff([]string{"web: build log latest follow=false", "api: build log 1a2b3c4 follow=true"}, *log); diff != "" {
		t.Errorf("what the controller was asked (-want +got):\n%s", diff)
	}
	out, errOut, code := slipway(t, "logs", "build", "1a2b3c4d", "-o", "json", "--app", "web", "--server", server)
	var got logsBuildOutput
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Log != whole || got.Build.ID != 3 {
		t.Errorf("-o json: exit %d, %v: %s%s", code, err, out, errOut)
	}

	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"logs", "build", "9999999", "--app", "web"}, 1, "no build of web of commit 9999999"},
		{[]string{"logs", "build"}, 2, "the controller runs several apps (web, api): name one with --app, e.g. slipway logs build --app web"},
		{[]string{"logs", "build", "1a2b", "--app", "web"}, 2, `build "1a2b": give a commit hash (at least its first 7 hex digits`},
		{[]string{"logs", "build", "master", "--app", "web"}, 2, "or latest"},
		{[]string{"logs", "build", "-f", "-o", "json", "--app", "web"}, 2, "leave out -f, or -o json"},
		{[]string{"logs", "build", "1a2b3c4", "1a2b3c4"}, 2, "accepts at most 1 arg(s), received 2"},
	} {
		_, errOut, code := slipway(t, append(tt.args, "--server", server)...)
		if code != tt.code || !strings.Contains(errOut, tt.msg) {
			t.Errorf("%v: exit %d: %s; want exit %d saying %q", tt.args, code, errOut, tt.code, tt.msg)
		}
	}
}

// TestLogsBuildWithoutController: with no controller, the builds of the
// data directory (slipway build's) are read.
func TestLogsBuildWithoutController(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	nowhere := []string{"--server", "http://127.0.0.1:1"}
	_, errOut, code := slipway(t, append([]string{"logs", "build"}, nowhere...)...)
	if code != 1 || !strings.Contains(errOut, "no slipway controller answers at http://127.0.0.1:1") ||
		!strings.Contains(errOut, "and no builds are recorded in .slipway: run slipway build first") {
		t.Errorf("no controller, no data: exit %d: %s", code, errOut)
	}

	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(dir, ".slipway", ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logPath := filepath.Join(dir, "build.log")
	os.WriteFile(logPath, []byte("$ go test ./...\nok\n"), 0o644)
	c := strings.Repeat("3f2a1bc5", 5)
	if _, err := store.CreateBuild(ctx, ledger.Build{App: "web", Commit: c, State: ledger.BuildPushed, LogPath: logPath}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"logs", "build"}, {"logs", "build", "3f2a1bc", "-f"}, {"logs", "build", "--app", "web"}} {
		out, errOut, code := slipway(t, append(args, nowhere...)...)
		if code != 0 || out != "$ go test ./...\nok\n" {
			t.Errorf("%v: exit %d, %q; stderr %s", args, code, out, errOut)
		}
	}
	out, _, code := slipway(t, append([]string{"logs", "build", c, "-o", "json"}, nowhere...)...)
	var got logsBuildOutput
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Log != "$ go test ./...\nok\n" || got.Build.Commit != c {
		t.Errorf("-o json: exit %d, %v: %s", code, err, out)
	}
	_, errOut, code = slipway(t, append([]string{"logs", "build", "1234567"}, nowhere...)...)
	if code != 1 || !strings.Contains(errOut, "no build of commit 1234567") || !strings.Contains(errOut, "(slipway build 1234567 builds it)") {
		t.Errorf("an unknown commit: exit %d: %s", code, errOut)
	}
	_, errOut, code = slipway(t, append([]string{"logs", "build", "--app", "api"}, nowhere...)...)
	if code != 1 || !strings.Contains(errOut, "no build of api yet") {
		t.Errorf("another app's builds: exit %d: %s", code, errOut)
	}
}
