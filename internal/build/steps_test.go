package build

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/testenv"
)

// logLines renders a text logger's records without their times.
func logLines(buf *bytes.Buffer) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l != "" {
			out = append(out, regexp.MustCompile(`^time=\S+ `).ReplaceAllString(l, ""))
		}
	}
	return out
}

// TestSteps: a step says when it starts, every 10 s while it runs, and when
// it ends with its duration, in the build log, the progress lines and the
// log.
func TestSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buildLog, progress, logged bytes.Buffer
		s := &steps{short: "3f2a1bc", build: 7, log: &buildLog, out: &progress,
			logger: slog.New(slog.NewTextHandler(&logged, nil))}

		st := s.start(StepTesting, "go test ./...")
		time.Sleep(45 * time.Second)
		if d := st.end("tests passed", "", ""); d != 45*time.Second {
			t.Errorf("testing took %s, want 45s", d)
		}
		st = s.start(StepPushing, "127.0.0.1:5000/app")
		time.Sleep(1500 * time.Millisecond)
		st.end("pushed", "127.0.0.1:5000/app@sha256:ab", " (tags 3f2a1bc, latest, sha-3f2a1bc…)", "image", "127.0.0.1:5000/app@sha256:ab")
		st = s.start(StepBuilding, ".")
		time.Sleep(12 * time.Second)
		if d := st.fail(); d != 12*time.Second {
			t.Errorf("building took %s, want 12s", d)
		}
		st.fail() // a second end says nothing more
		time.Sleep(time.Minute)

		wantLog := []string{
			"# testing: go test ./...",
			"# still testing, 10 s",
			"# still testing, 20 s",
			"# still testing, 30 s",
			"# still testing, 40 s",
			"# tests passed in 45s",
			"# pushing: 127.0.0.1:5000/app",
			"# pushed 127.0.0.1:5000/app@sha256:ab in 1.5s (tags 3f2a1bc, latest, sha-3f2a1bc…)",
			"# building: .",
			"# still building, 10 s",
			"# building failed after 12s",
		}
		if diff := cmp.Diff(wantLog, strings.Split(strings.TrimSpace(buildLog.String()), "\n")); diff != "" {
			t.Errorf("build log (-want +got):\n%s", diff)
		}
		var wantProgress []string
		for _, l := range wantLog {
			wantProgress = append(wantProgress, "3f2a1bc: "+strings.TrimPrefix(l, "# "))
		}
		if diff := cmp.Diff(wantProgress, strings.Split(strings.TrimSpace(progress.String()), "\n")); diff != "" {
			t.Errorf("progress (-want +got):\n%s", diff)
		}
		wantLogged := []string{
			"level=INFO msg=testing commit=3f2a1bc build=7",
			`level=INFO msg="still testing" commit=3f2a1bc build=7 elapsed=10s`,
			`level=INFO msg="still testing" commit=3f2a1bc build=7 elapsed=20s`,
			`level=INFO msg="still testing" commit=3f2a1bc build=7 elapsed=30s`,
			`level=INFO msg="still testing" commit=3f2a1bc build=7 elapsed=40s`,
			`level=INFO msg="tests passed" commit=3f2a1bc build=7 step=testing duration=45s`,
			"level=INFO msg=pushing commit=3f2a1bc build=7",
			`level=INFO msg=pushed commit=3f2a1bc build=7 step=pushing image=127.0.0.1:5000/app@sha256:ab duration=1.5s`,
			"level=INFO msg=building commit=3f2a1bc build=7",
			`level=INFO msg="still building" commit=3f2a1bc build=7 elapsed=10s`,
			`level=INFO msg="building failed" commit=3f2a1bc build=7 duration=12s`,
		}
		if diff := cmp.Diff(wantLogged, logLines(&logged)); diff != "" {
			t.Errorf("logged (-want +got):\n%s", diff)
		}
	})
}

func TestLikeTheBuild(t *testing.T) {
	for _, tt := range []struct {
		env     []string
		command string
		want    []string
	}{
		{[]string{"HOME=/h"}, "go test ./...", []string{"HOME=/h", "GOFLAGS=-trimpath", "CGO_ENABLED=0"}},
		// Who sets CGO_ENABLED keeps it; tests that need cgo get it.
		{[]string{"CGO_ENABLED=1"}, "go test ./...", []string{"CGO_ENABLED=1", "GOFLAGS=-trimpath"}},
		{nil, "go test -race ./...", []string{"GOFLAGS=-trimpath"}},
		{nil, "go vet ./... && go test -count=1 -msan ./...", []string{"GOFLAGS=-trimpath"}},
		// (A command's own CGO_ENABLED=1 wins in the shell.)
		{nil, "CGO_ENABLED=1 go test ./...", []string{"GOFLAGS=-trimpath", "CGO_ENABLED=0"}},
	} {
		if diff := cmp.Diff(tt.want, likeTheBuild(tt.env, tt.command)); diff != "" {
			t.Errorf("%q, %q (-want +got):\n%s", tt.env, tt.command, diff)
		}
	}
}

func TestWithGoFlag(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want []string
	}{
		{[]string{"HOME=/h"}, []string{"HOME=/h", "GOFLAGS=-trimpath"}},
		{[]string{"GOFLAGS=", "HOME=/h"}, []string{"HOME=/h", "GOFLAGS=-trimpath"}},
		{[]string{"GOFLAGS=-buildvcs=false", "HOME=/h"}, []string{"HOME=/h", "GOFLAGS=-buildvcs=false -trimpath"}},
		{[]string{"GOFLAGS=-mod=mod -trimpath"}, []string{"GOFLAGS=-mod=mod -trimpath"}},
	} {
		if diff := cmp.Diff(tt.want, withGoFlag(tt.env, "-trimpath")); diff != "" {
			t.Errorf("withGoFlag(%q) (-want +got):\n%s", tt.env, diff)
		}
	}
}

// fakeGo is a go command that downloads nothing and builds a binary of a
// few bytes; with FAKE_GO_FAIL_MOD set, go mod download fails.
const fakeGo = `#!/bin/sh
case "$1" in
mod)
	echo "go: downloading example.com/dep v1.0.0"
	[ -n "$FAKE_GO_FAIL_MOD" ] && { echo "go: example.com/dep@v1.0.0: 410 Gone" >&2; exit 1; }
	exit 0 ;;
build)
	while [ $# -gt 0 ]; do
		if [ "$1" = -o ]; then shift; printf 'binary' > "$1"; fi
		shift
	done ;;
esac
`

// TestBuildSteps runs a build whose go command is a stand-in (the
// integration tests run the real one): each step is in the build log and
// the log, and the test command compiles as go build does (-trimpath).
func TestBuildSteps(t *testing.T) {
	repo, commit := testenv.SampleAppRepo(t)
	goCmd := filepath.Join(t.TempDir(), "go")
	if err := os.WriteFile(goCmd, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Run("succeeds", func(t *testing.T) {
		e := newEnv(t, repo, startRegistry(t), `echo "GOFLAGS=$GOFLAGS CGO_ENABLED=$CGO_ENABLED"`)
		e.b.Go = goCmd
		var logged bytes.Buffer
		e.b.Logger = slog.New(slog.NewTextHandler(&logged, nil))
		res, err := e.b.Run(context.Background(), Request{Rev: commit})
		if err != nil {
			t.Fatal(err)
		}
		log, err := os.ReadFile(res.Build.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		short := commit[:7]
		want := []string{
			`^# fetching modules: go mod download$`,
			`^\$ go mod download$`,
			`^go: downloading example.com/dep v1.0.0$`,
			`^# modules fetched in [0-9.]+m?s$`,
			`^# testing: echo "GOFLAGS=\$GOFLAGS CGO_ENABLED=\$CGO_ENABLED"$`,
			`^\$ echo "GOFLAGS=\$GOFLAGS CGO_ENABLED=\$CGO_ENABLED"$`,
			`^GOFLAGS=(.* )?-trimpath CGO_ENABLED=0$`,
			`^# tests passed in [0-9.]+m?s$`,
			`^# building: \.$`,
			`^\$ CGO_ENABLED=0 GOOS=linux GOARCH=\w+ go build -trimpath -buildvcs=true -o \S+ -- \.$`,
			`^# compiled in [0-9.]+m?s$`,
			`^# making the image$`,
			`^# image made in [0-9.]+m?s \(sha256:[0-9a-f]{64}\)$`,
			`^# pushing: ` + regexp.QuoteMeta(e.repo) + `$`,
			`^# pushed ` + regexp.QuoteMeta(res.Reference()) + ` in [0-9.]+m?s \(tags ` + short + `, latest, sha-` + commit + `\)$`,
		}
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		if len(lines) != len(want) {
			t.Fatalf("build log has %d lines, want %d:\n%s", len(lines), len(want), log)
		}
		for i, re := range want {
			if !regexp.MustCompile(re).MatchString(lines[i]) {
				t.Errorf("build log line %d = %q, want %s", i+1, lines[i], re)
			}
		}
		for _, msg := range []string{"msg=\"fetching modules\"", "msg=\"modules fetched\"", "msg=testing", "msg=\"tests passed\"", "msg=building",
			"msg=compiled", "msg=\"making the image\"", "msg=\"image made\"", "msg=pushing", "msg=pushed"} {
			if !strings.Contains(logged.String(), msg+" commit="+short) {
				t.Errorf("the log lacks %s:\n%s", msg, logged.String())
			}
		}
	})
	t.Run("modules cannot be fetched", func(t *testing.T) {
		t.Setenv("FAKE_GO_FAIL_MOD", "1")
		e := newEnv(t, repo, startRegistry(t), "true")
		e.b.Go = goCmd
		res, err := e.b.Run(context.Background(), Request{Rev: commit})
		if !errors.Is(err, ErrModules) {
			t.Fatalf("Run = %v, want ErrModules", err)
		}
		if !strings.Contains(res.Build.Reason, "fetching modules failed (exit status 1)") || !strings.Contains(res.Build.Reason, "410 Gone") {
			t.Errorf("reason = %q", res.Build.Reason)
		}
		log, _ := os.ReadFile(res.Build.LogPath)
		if !regexp.MustCompile(`(?m)^# fetching modules failed after [0-9.]+m?s$`).Match(log) || strings.Contains(string(log), "# testing") {
			t.Errorf("build log:\n%s", log)
		}
	})
}
