package ledger

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Conditions of the ledger's file that a write can run into; Explain
// returns an error that matches one of them with errors.Is.
var (
	// ErrLocked: another process holds a write transaction on the ledger
	// for longer than the busy timeout.
	ErrLocked = errors.New("the ledger is locked by another process")
	// ErrReadOnly: the ledger file, its directory or its file system does
	// not take writes.
	ErrReadOnly = errors.New("the ledger is read-only")
	// ErrDiskFull: the file system holding the ledger has no space left.
	ErrDiskFull = errors.New("the disk holding the ledger is full")
)

// hints say what to do about each condition.
var hints = map[error]string{
	ErrLocked:   "another slipway on the same data directory, or a tool holding a write transaction; stop it (fuser or lsof on ledger.db names it); writes go through once it lets go",
	ErrReadOnly: "make ledger.db, ledger.db-wal, ledger.db-shm and their directory writable by slipway's user, or remount the file system read-write",
	ErrDiskFull: "free space on the file system of slipway's data directory; writes go through once there is room",
}

// explained is an error of the database with the condition it shows.
type explained struct {
	cond error
	err  error
}

func (e *explained) Error() string {
	return e.cond.Error() + " (" + hints[e.cond] + "): " + e.err.Error()
}

func (e *explained) Unwrap() []error { return []error{e.cond, e.err} }

// Explain returns err with what it means for the ledger and what to do when
// err is the database saying the ledger is locked by another process,
// read-only, or out of disk space; any other error is returned as it is.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	for _, cond := range []error{ErrLocked, ErrReadOnly, ErrDiskFull} {
		if errors.Is(err, cond) {
			return err
		}
	}
	if cond := condition(err); cond != nil {
		return &explained{cond: cond, err: err}
	}
	if ioError(err) {
		// SQLite says only that a read or write failed: the files of
		// the ledgers open in this process might say why (made
		// immutable, or their file system remounted read-only, while
		// slipway runs).
		for _, path := range openPaths() {
			if e := askFiles(path, err); e != nil {
				return e
			}
		}
	}
	return err
}

// ExplainWrite is Explain for the error of work that wrote to the ledger
// among other things (a build): only an error of the database is
// explained, so that a failure of the work's own files is not taken for
// the ledger's.
func ExplainWrite(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return Explain(err)
	}
	return err
}

// open counts the ledgers this process has open, by path.
var open = struct {
	sync.Mutex
	paths map[string]int
}{paths: map[string]int{}}

func opened(path string, n int) {
	open.Lock()
	defer open.Unlock()
	if open.paths[path] += n; open.paths[path] <= 0 {
		delete(open.paths, path)
	}
}

func openPaths() []string {
	open.Lock()
	defer open.Unlock()
	paths := make([]string, 0, len(open.paths))
	for p := range open.paths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// ioError reports whether err is SQLite failing to read, write or open
// a file without saying why.
func ioError(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff
	return code == sqlite3.SQLITE_IOERR || code == sqlite3.SQLITE_CANTOPEN
}

// askFiles asks the file system whether the ledger at path (its file, its
// write-ahead log and shared memory, its directory) takes writes, and
// returns err explained with the answer, or nil if nothing refuses.
func askFiles(path string, err error) error {
	for _, p := range []string{path, path + "-wal", path + "-shm", filepath.Dir(path)} {
		if aerr := syscall.Access(p, unix.W_OK); aerr != nil && !errors.Is(aerr, syscall.ENOENT) {
			if cond := condition(aerr); cond != nil {
				return &explained{cond: cond, err: fmt.Errorf("%w (%s: %w)", err, p, aerr)}
			}
		}
	}
	return nil
}

// explainOpen is Explain for an error of opening the ledger at path: when
// SQLite only says it cannot open the file, the file system is asked why.
func explainOpen(path string, err error) error {
	if e := Explain(err); e != err {
		return e
	}
	if e := askFiles(path, err); e != nil {
		return e
	}
	return err
}

func condition(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return ErrLocked
		case sqlite3.SQLITE_READONLY:
			return ErrReadOnly
		case sqlite3.SQLITE_FULL:
			return ErrDiskFull
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR:
			// The message does not say why; the file system might.
		}
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrDiskFull
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return ErrReadOnly
	}
	return nil
}
