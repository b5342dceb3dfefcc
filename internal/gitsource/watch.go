package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// RefsWatcher tells when a push moves the refs of repositories on this
// machine, from the kernel's file notifications (inotify): it costs
// nothing while no ref moves, where RefsStamp must be called over and over.
//
// It watches the repository's git directory, for packed-refs and HEAD, and
// every directory under refs, adding the ones a push creates (a branch named
// team/x). git writes a ref as NAME.lock and renames it over NAME; lock
// files themselves are not reported.
type RefsWatcher struct {
	w *fsnotify.Watcher

	mu    sync.Mutex
	roots map[string][]func() // git directory → what to call on a change
	dirs  map[string]string   // watched directory → its git directory
}

// NewRefsWatcher returns a watcher of no repository yet.
func NewRefsWatcher() (*RefsWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch repositories' refs: %w", err)
	}
	return &RefsWatcher{w: w, roots: map[string][]func(){}, dirs: map[string]string{}}, nil
}

// Add watches the refs of s's repository, calling changed (from Run's
// goroutine; it must not block) whenever they may have moved. ok is false
// for a repository that is not on this machine; an error says the kernel
// would not watch it (too many watches, for example), in which case nothing
// of it is watched.
func (rw *RefsWatcher) Add(s *Source, changed func()) (ok bool, err error) {
	root, local := s.localDir()
	if !local {
		return false, nil
	}
	root = filepath.Clean(root)
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if fns, ok := rw.roots[root]; ok {
		rw.roots[root] = append(fns, changed) // another app of the same repository
		return true, nil
	}
	var added []string
	err = rw.w.Add(root)
	if err == nil {
		rw.dirs[root] = root
		added = append(added, root)
		err = rw.addTreeLocked(root, filepath.Join(root, "refs"), &added)
	}
	if err != nil {
		for _, d := range added {
			_ = rw.w.Remove(d)
			delete(rw.dirs, d)
		}
		return true, fmt.Errorf("watch the refs of %s: %w", root, err)
	}
	rw.roots[root] = []func(){changed}
	return true, nil
}

// addTreeLocked watches dir and every directory under it, appending them to
// added.
func (rw *RefsWatcher) addTreeLocked(root, dir string, added *[]string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if _, ok := rw.dirs[path]; ok {
			return nil
		}
		if err := rw.w.Add(path); err != nil {
			return err
		}
		rw.dirs[path] = root
		*added = append(*added, path)
		return nil
	})
}

// Run delivers the changes until ctx ends, then closes the watcher. It
// returns the watcher's error, if it fails (its repositories are then no
// longer watched; their fetches are no longer skipped either, see GitRepo).
func (rw *RefsWatcher) Run(ctx context.Context) error {
	defer rw.w.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-rw.w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: every repository may have moved.
				rw.mu.Lock()
				for _, fns := range rw.roots {
					for _, changed := range fns {
						changed()
					}
				}
				rw.mu.Unlock()
				continue
			}
			return fmt.Errorf("watch repositories' refs: %w", err)
		case ev, ok := <-rw.w.Events:
			if !ok {
				return nil
			}
			rw.event(ev)
		}
	}
}

func (rw *RefsWatcher) event(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	dir, base := filepath.Dir(name), filepath.Base(name)
	if strings.HasSuffix(base, ".lock") {
		return
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	root, ok := rw.dirs[dir]
	if !ok {
		return
	}
	if dir == root && base != "packed-refs" && base != "HEAD" {
		return // the git directory's other files: objects, index, logs
	}
	if ev.Has(fsnotify.Create) && dir != root {
		// A new directory under refs (team/ of team/x) is watched too; its
		// refs written before the watch are covered by this call.
		var added []string
		_ = rw.addTreeLocked(root, name, &added)
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if _, watched := rw.dirs[name]; watched {
			delete(rw.dirs, name) // the kernel drops the watch itself
		}
	}
	for _, changed := range rw.roots[root] {
		changed()
	}
}
