package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"slipway.dev/slipway/internal/ledger"
)

// LatestBuild names an app's newest build in GET PREFIX/builds/latest/log.
const LatestBuild = "latest"

// ValidBuildCommit checks what names a build in the build log's route:
// "latest", or a commit hash of which at least the first 7 hex digits are
// given.
func ValidBuildCommit(commit string) error {
	if commit == LatestBuild {
		return nil
	}
	if len(commit) < 7 || len(commit) > 40 || strings.Trim(strings.ToLower(commit), "0123456789abcdef") != "" {
		return invalid("build %q: give a commit hash (at least its first 7 hex digits, as git log --oneline prints it) or %s", commit, LatestBuild)
	}
	return nil
}

// followParam reads ?follow=: 1 or true follows, 0, false or nothing does
// not.
func followParam(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("follow"); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, invalid("follow=%q: give follow=1 to follow, or leave it out", v)
	}
}

// buildLog serves GET PREFIX/builds/{commit}/log: the log of the app's
// newest build of the commit, as text; with follow=1 it streams until the
// build ends.
func (s *Server) buildLog(w http.ResponseWriter, r *http.Request, a App) error {
	commit := strings.ToLower(r.PathValue("commit"))
	if err := ValidBuildCommit(commit); err != nil {
		return err
	}
	follow, err := followParam(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	fw := &flushWriter{w: w}
	err = a.BuildLog(r.Context(), commit, follow, fw)
	switch {
	case err == nil:
		return nil
	case fw.wrote:
		// The answer has begun: it can only end.
		s.log.Warn("build log cut short", "app", a.Name(), "commit", commit, "err", err)
		return nil
	case errors.Is(err, ledger.ErrAmbiguous):
		return invalid("%v", err)
	}
	return err
}

// BuildLog copies the log of app's newest build of commit ("latest": its
// newest build) to w; with follow, until the build ends or ctx does.
func (c *Client) BuildLog(ctx context.Context, app, commit string, follow bool, w io.Writer) error {
	return c.stream(ctx, appPath(app, "/builds/"+url.PathEscape(commit)+"/log"), follow, w)
}
