package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// buildRunning, when set, is what a followed build of the fake app waits
// for before it ends.
var buildRunning chan struct{}

// BuildLog knows one build, of commit: "latest" or any prefix of it names
// it; "aaaaaaa" is a prefix of two built commits; "fffffff" breaks off.
func (f *fakeApp) BuildLog(ctx context.Context, c string, follow bool, w io.Writer) error {
	f.record(fmt.Sprintf("build log %s follow=%t", c, follow))
	switch {
	case c == "aaaaaaa":
		return fmt.Errorf("commit aaaaaaa: 2 built commits start with it; give more digits: %w", ledger.ErrAmbiguous)
	case c == "fffffff":
		fmt.Fprintln(w, "# testing")
		return errors.New("disk gone")
	case c != LatestBuild && !strings.HasPrefix(commit, c):
		return fmt.Errorf("no build of %s of commit %s: %w", f.name, c, ledger.ErrNotFound)
	}
	if _, err := fmt.Fprintln(w, "# testing: go test ./..."); err != nil {
		return err
	}
	if follow && buildRunning != nil {
		select {
		case <-buildRunning:
		case <-ctx.Done():
			return nil
		}
	}
	_, err := fmt.Fprintln(w, "# tests passed in 2s")
	return err
}

func TestBuildLog(t *testing.T) {
	app := newFakeApp("web")
	base := startServer(t, &fakeApps{apps: []*fakeApp{app}})
	ctx := context.Background()
	c := NewClient(base, "")
	const whole = "# testing: go test ./...\n# tests passed in 2s\n"
	for _, tt := range []struct{ app, commit string }{
		{"web", commit[:7]}, {"", commit}, {"web", LatestBuild}, {"", LatestBuild}, {"web", strings.ToUpper(commit[:9])},
	} {
		var out strings.Builder
		if err := c.BuildLog(ctx, tt.app, tt.commit, false, &out); err != nil || out.String() != whole {
			t.Errorf("build log of %q %q: %q, %v; want %q", tt.app, tt.commit, out.String(), err, whole)
		}
	}

	tests := []struct {
		name, commit string
		code         string
		message      string
	}{
		{"unknown commit", "1234567", CodeNotFound, "no build of web of commit 1234567"},
		{"ambiguous", "aaaaaaa", CodeInvalid, "give more digits"},
		{"too short", "abab", CodeInvalid, `build "abab": give a commit hash (at least its first 7 hex digits`},
		{"not hex", "master", CodeInvalid, "or latest"},
		{"too long", commit + "ab", CodeInvalid, "give a commit hash"},
	}
	for _, tt := range tests {
		err := c.BuildLog(ctx, "web", tt.commit, true, io.Discard)
		if code(err) != tt.code || !strings.Contains(fmt.Sprint(err), tt.message) {
			t.Errorf("%s: %v (code %q), want code %q saying %q", tt.name, err, code(err), tt.code, tt.message)
		}
	}
	if err := c.BuildLog(ctx, "api", LatestBuild, false, io.Discard); code(err) != CodeNotFound || !strings.Contains(err.Error(), `no app "api"`) {
		t.Errorf("build log of an unknown app: %v", err)
	}
	// A log that breaks off after it began ends there.
	var out strings.Builder
	if err := c.BuildLog(ctx, "web", "fffffff", false, &out); err != nil || out.String() != "# testing\n" {
		t.Errorf("broken-off log: %q, %v", out.String(), err)
	}
	// A bad follow value is refused.
	s := NewServer(&fakeApps{apps: []*fakeApp{app}}, "secret", nil)
	if w := serve(s, "GET", "/api/v1/builds/latest/log?follow=yes", "", ""); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "follow=1") {
		t.Errorf("follow=yes: %d %s", w.Code, w.Body)
	}
}

// TestBuildLogFollow: a followed log reaches the client line by line while
// the build runs, and the answer ends when the build does.
func TestBuildLogFollow(t *testing.T) {
	app := newFakeApp("web")
	base := startServer(t, &fakeApps{apps: []*fakeApp{app}})
	buildRunning = make(chan struct{})
	defer func() { buildRunning = nil }()

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := NewClient(base, "").BuildLog(context.Background(), "web", LatestBuild, true, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	if !lines.Scan() || lines.Text() != "# testing: go test ./..." {
		t.Fatalf("first line while the build runs: %q, %v", lines.Text(), lines.Err())
	}
	select {
	case err := <-done:
		t.Fatalf("the followed log ended while the build runs: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(buildRunning)
	if !lines.Scan() || lines.Text() != "# tests passed in 2s" {
		t.Fatalf("line after the build: %q, %v", lines.Text(), lines.Err())
	}
	if lines.Scan() {
		t.Errorf("more after the build ended: %q", lines.Text())
	}
	if err := <-done; err != nil {
		t.Errorf("follow: %v", err)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if got := app.calls[len(app.calls)-1]; got != "build log latest follow=true" {
		t.Errorf("the app was asked %q", got)
	}
}
