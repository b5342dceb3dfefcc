package apps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// LatestBuild is the name BuildLog takes for an app's newest build.
const LatestBuild = "latest"

// followEvery is how often a followed build's row and log are read again.
const followEvery = 200 * time.Millisecond

// BuildLog copies the log of the app's newest build of commit (a hash or a
// prefix of it; "" or "latest" for the app's newest build of any commit)
// to w. With follow it keeps copying while the build runs, and returns
// when the build ends or ctx does.
func (p *App) BuildLog(ctx context.Context, commit string, follow bool, w io.Writer) error {
	return CopyBuildLog(ctx, p.store, p.Config.App, commit, follow, w)
}

// CopyBuildLog is BuildLog over a ledger, for app's builds (any app's when
// app is ""): `slipway logs build` reads a data directory with it when no
// controller runs. An unknown commit is ledger.ErrNotFound, a prefix of
// several built commits ledger.ErrAmbiguous.
//
// A build that did no work (its image existed) or failed before its tests
// has no log: one line says its state and reason instead. The log of a
// failed build ends with a line giving the reason's first line.
func CopyBuildLog(ctx context.Context, store *ledger.Store, app, commit string, follow bool, w io.Writer) error {
	b, err := FindBuild(ctx, store, app, commit)
	if err != nil {
		return err
	}
	var (
		f    *os.File
		wait = time.NewTicker(followEvery)
	)
	defer wait.Stop()
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		if f == nil && b.LogPath != "" {
			if f, err = os.Open(b.LogPath); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("build %d of %s: its log %s is gone (was the data directory cleaned?): %w", b.ID, short(b.Commit), b.LogPath, ledger.ErrNotFound)
				}
				return fmt.Errorf("build %d of %s: read its log: %w", b.ID, short(b.Commit), err)
			}
		}
		if f != nil {
			if _, err := io.Copy(w, f); err != nil {
				return fmt.Errorf("build %d of %s: copy its log: %w", b.ID, short(b.Commit), err)
			}
		}
		if b.State.Final() || !follow {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
		}
		if b, err = store.GetBuild(ctx, b.ID); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	switch {
	case f == nil && !b.State.Final():
		_, err = fmt.Fprintf(w, "build %d of %s: %s, no log yet\n", b.ID, b.Commit, b.State)
	case f == nil:
		_, err = fmt.Fprintf(w, "build %d of %s: %s, no log: %s\n", b.ID, b.Commit, b.State, orNone(b.Reason))
	case b.State == ledger.BuildFailed:
		reason, _, _ := strings.Cut(b.Reason, "\n")
		_, err = fmt.Fprintf(w, "# build %d failed: %s\n", b.ID, reason)
	}
	return err
}

// FindBuild returns app's newest build of commit (any app's when app is
// ""), or its newest build when commit is "" or "latest".
func FindBuild(ctx context.Context, store *ledger.Store, app, commit string) (ledger.Build, error) {
	if commit != "" && commit != LatestBuild {
		return store.LatestAppBuild(ctx, app, commit)
	}
	list, err := store.ListBuilds(ctx, ledger.BuildFilter{App: app, Limit: 1})
	if err != nil {
		return ledger.Build{}, err
	}
	if len(list) == 0 {
		of := ""
		if app != "" {
			of = " of " + app
		}
		return ledger.Build{}, fmt.Errorf("no build%s yet: the controller builds each new commit of its branch (slipway build builds one by hand): %w", of, ledger.ErrNotFound)
	}
	return list[0], nil
}

func orNone(s string) string {
	if s == "" {
		return "no reason recorded"
	}
	return s
}
