package pipeline

import (
	"errors"

	"slipway.dev/slipway/internal/ledger"
)

// waitsForLedger reports whether err is the ledger not taking writes for
// now (read-only, or locked by another process): a step that failed so is
// tried again until the ledger takes its writes, the way ledgerWrite
// waits, and does not fail its deployment.
func waitsForLedger(err error) bool {
	return errors.Is(err, ledger.ErrReadOnly) || errors.Is(err, ledger.ErrLocked)
}
