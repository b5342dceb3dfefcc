//go:build bench

package status

import (
	"context"
	"errors"
	"time"

	"slipway.dev/slipway/internal/dora"
)

// DORA is not what this benchmark measures (internal/dora and internal/apps
// have their own).
func (controllerApp) DORA(ctx context.Context, since time.Duration) (dora.Report, error) {
	return dora.Report{}, errors.ErrUnsupported
}
