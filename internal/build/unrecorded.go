package build

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"slipway.dev/slipway/internal/ledger"
)

// unrecorded holds the rows of builds that failed while the ledger took no
// writes (read-only, or locked by another process): their final state is
// written before the next build starts, so that no build is left recorded
// as running once the ledger takes writes again.
type unrecorded struct {
	mu   sync.Mutex
	rows []ledger.Build
}

func (u *unrecorded) add(row ledger.Build) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rows = append(u.rows, row)
}

// waitsForLedger reports whether err is the ledger not taking writes for
// now: the write goes through once it is writable again, or let go by the
// process that holds it.
func waitsForLedger(err error) bool {
	return errors.Is(err, ledger.ErrReadOnly) || errors.Is(err, ledger.ErrLocked)
}

// recordFailed writes the final state of the builds that failed while the
// ledger took no writes, and their events. It returns the ledger's error
// (explained) if it still takes none.
func (b *Builder) recordFailed(ctx context.Context) error {
	b.unrecorded.mu.Lock()
	defer b.unrecorded.mu.Unlock()
	for len(b.unrecorded.rows) > 0 {
		row := b.unrecorded.rows[0]
		if err := b.Ledger.UpdateBuild(ctx, &row); err != nil {
			return fmt.Errorf("record build %d as failed: %w", row.ID, ledger.Explain(err))
		}
		b.addEvent(ctx, row, ledger.OutcomeFailed, firstLine(row.Reason))
		b.unrecorded.rows = b.unrecorded.rows[1:]
	}
	return nil
}
