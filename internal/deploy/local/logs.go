package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// logFile is a replica's output file, capped at max bytes: when full it is
// moved to NAME.1 (replacing the previous one) and started afresh.
type logFile struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

func openLog(path string, max int64) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open replica log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open replica log: %w", err)
	}
	return &logFile{path: path, max: max, f: f, size: fi.Size()}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		l.f.Close()
		if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			l.f = nil
			return 0, err
		}
		l.f, l.size = f, 0
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// lastLines returns up to n last lines of the log at path (and of its
// rotated predecessor when the current file is short).
func lastLines(path string, n int) []string {
	var lines []string
	for _, p := range []string{path + ".1", path} {
		b, err := readTail(p, 64<<10)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func readTail(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, err
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}

// writeLogs copies the replicas' logs in dir to w, each line prefixed by
// "[replica] ", oldest file first. With follow, it then keeps copying what
// is appended (including new replicas' logs) until ctx ends.
func writeLogs(ctx context.Context, dir string, follow bool, w io.Writer) error {
	type cursor struct {
		ino  uint64
		off  int64
		rest []byte // an unfinished line
	}
	cursors := map[string]*cursor{}
	emit := func(name string, c *cursor, b []byte) error {
		b = append(c.rest, b...)
		c.rest = nil
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				c.rest = append([]byte(nil), b...)
				return nil
			}
			if _, err := fmt.Fprintf(w, "[%s] %s\n", name, b[:i]); err != nil {
				return err
			}
			b = b[i+1:]
		}
		return nil
	}
	scan := func(first bool) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		type file struct {
			name, path string
			mod        time.Time
		}
		var files []file
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".log") {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			files = append(files, file{strings.TrimSuffix(e.Name(), ".log"), filepath.Join(dir, e.Name()), fi.ModTime()})
		}
		sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
		for _, f := range files {
			c := cursors[f.path]
			if c == nil {
				c = &cursor{}
				cursors[f.path] = c
				if first {
					// Show what was rotated away first.
					if b, err := os.ReadFile(f.path + ".1"); err == nil {
						if err := emit(f.name, c, b); err != nil {
							return err
						}
					}
				}
			}
			fh, err := os.Open(f.path)
			if err != nil {
				continue
			}
			fi, err := fh.Stat()
			if err != nil {
				fh.Close()
				continue
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				if c.ino != 0 && c.ino != st.Ino {
					c.off = 0 // rotated: the new file starts over
				}
				c.ino = st.Ino
			}
			if fi.Size() < c.off {
				c.off = 0
			}
			if fi.Size() > c.off {
				b := make([]byte, fi.Size()-c.off)
				n, _ := fh.ReadAt(b, c.off)
				c.off += int64(n)
				if err := emit(f.name, c, b[:n]); err != nil {
					fh.Close()
					return err
				}
			}
			fh.Close()
		}
		return nil
	}
	if err := scan(true); err != nil {
		return fmt.Errorf("read logs: %w", err)
	}
	if !follow {
		for path, c := range cursors {
			if len(c.rest) > 0 {
				name := strings.TrimSuffix(filepath.Base(path), ".log")
				if _, err := fmt.Fprintf(w, "[%s] %s\n", name, c.rest); err != nil {
					return err
				}
			}
		}
		return nil
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := scan(false); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // the environment was removed
				}
				return fmt.Errorf("read logs: %w", err)
			}
		}
	}
}

// pruneLogs keeps the newest keep log files of dir that no replica uses.
func pruneLogs(dir string, inUse map[string]bool, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type file struct {
		path string
		mod  time.Time
	}
	var old []file
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") || inUse[strings.TrimSuffix(e.Name(), ".log")] {
			continue
		}
		if fi, err := e.Info(); err == nil {
			old = append(old, file{filepath.Join(dir, e.Name()), fi.ModTime()})
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].mod.After(old[j].mod) })
	for i := keep; i < len(old); i++ {
		os.Remove(old[i].path)
		os.Remove(old[i].path + ".1")
	}
}
