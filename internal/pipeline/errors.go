package pipeline

import (
	"errors"
	"fmt"
)

// Conditions callers branch on. The API maps them to HTTP statuses and the
// CLI to exit codes.
var (
	// ErrNotFastForward: the commit does not descend from the current release.
	ErrNotFastForward = errors.New("not a fast-forward of the current release")
	// ErrNotInSource: the commit is not on the branch the source environment tracks (master).
	ErrNotInSource = errors.New("not contained in the source branch")
	// ErrNotVerified: the commit has not passed the source environment's checks.
	ErrNotVerified = errors.New("not verified on the source environment")
	// ErrTooSoon: verified, but not for the minimum time yet.
	ErrTooSoon = errors.New("not on the source environment for the minimum time yet")
	// ErrBusy: a rollout of the environment is already in flight.
	ErrBusy = errors.New("a rollout of this environment is in flight")
	// ErrNothingReleased: there is no release to roll back from or to.
	ErrNothingReleased = errors.New("nothing has been released")
	// ErrNotReleased: the rollback target was never released.
	ErrNotReleased = errors.New("never released")
	// ErrAlreadyLive: the target already runs.
	ErrAlreadyLive = errors.New("already live")
	// ErrReasonRequired: --force was given without --reason.
	ErrReasonRequired = errors.New("a forced release needs a reason")
	// ErrNotDeployed: nothing runs on the environment yet.
	ErrNotDeployed = errors.New("nothing is deployed")
	// ErrUnknownEnv: no environment of that name.
	ErrUnknownEnv = errors.New("no such environment")
	// ErrNoControlledEnv: the configuration has no controlled environment to release to.
	ErrNoControlledEnv = errors.New("no controlled environment configured")
	// ErrInvalid: a request that can never succeed as written.
	ErrInvalid = errors.New("invalid request")
	// ErrStopped: the environment is stopped (slipway start ENV).
	ErrStopped = errors.New("environment is stopped")
	// ErrNotStopped: start was asked of an environment that runs.
	ErrNotStopped = errors.New("environment is not stopped")
	// ErrLocked: the environment is locked (slipway unlock ENV).
	ErrLocked = errors.New("environment is locked")
	// ErrFrozen: a freeze window of the configuration holds the environment.
	ErrFrozen = errors.New("environment is frozen")
	// ErrNotLocked: unlock was asked of an environment that is not locked.
	ErrNotLocked = errors.New("environment is not locked")
	// ErrNotPinned: unpin was asked of an environment that is not pinned.
	ErrNotPinned = errors.New("environment is not pinned")
)

// TransientError is a step's error that may go away by itself (a registry
// or git server that did not answer): the step is tried again with backoff.
// Any other error of a step is terminal: the deployment fails.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }

func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as transient; nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether err is marked transient.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// RefusedError is a release that failed its preflight, or a rollback the
// schema check refused (Rollback set). Prod is untouched.
type RefusedError struct {
	Env    string
	Commit string
	Reason string
	Err    error // one of the sentinels above
	// Rollback names the version a refused rollback went back to.
	Rollback string
}

func (e *RefusedError) Error() string {
	if e.Rollback != "" {
		return fmt.Sprintf("rollback of %s to %s refused: %s", e.Env, e.Rollback, e.Reason)
	}
	return fmt.Sprintf("release of %s to %s refused: %s", shortHash(e.Commit), e.Env, e.Reason)
}

func (e *RefusedError) Unwrap() error { return e.Err }

func shortHash(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}
