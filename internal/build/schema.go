package build

import (
	"context"
	"errors"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/schema"
)

// ErrSchema: the commit's migrations break the convention of
// docs/migrations.md (a declaration slipway does not know, dialects that
// disagree, a schema.migrations path the commit lacks).
var ErrSchema = errors.New("migrations do not follow the convention")

// readSchema reads what the migrations of the commit checked out in
// checkout declare, when the configuration names them; it returns the
// labels to put on the image.
func (b *Builder) readSchema(commit, checkout string, row *ledger.Build) (map[string]string, error) {
	if !b.Schema.Enabled() {
		return nil, nil
	}
	info, _, err := schema.Read(os.DirFS(checkout), b.Schema.Migrations)
	if err != nil {
		return nil, fmt.Errorf("%w: commit %s: %w; see docs/migrations.md", ErrSchema, commit[:7], err)
	}
	row.Schema = ledgerSchema(info)
	return info.Labels(), nil
}

// imageSchema reads the schema labels of the image pushed as digest (one
// built before, or one from CI).
func (b *Builder) imageSchema(ctx context.Context, digest v1.Hash) (ledger.Schema, error) {
	img, err := b.Registry.Image(ctx, b.Repository, digest)
	if err != nil {
		return ledger.Schema{}, fmt.Errorf("%w: read the image's labels: %w", ErrPush, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return ledger.Schema{}, fmt.Errorf("%w: read the image's labels: %w", ErrPush, err)
	}
	info, ok, err := schema.FromLabels(cf.Config.Labels)
	if err != nil {
		return ledger.Schema{}, fmt.Errorf("%w: %s@%s: %w", ErrSchema, b.Repository, digest, err)
	}
	if !ok {
		return ledger.Schema{}, nil
	}
	return ledgerSchema(info), nil
}

func ledgerSchema(i schema.Info) ledger.Schema {
	return ledger.Schema{Known: true, Version: i.Version, Floor: i.Floor, FloorBy: i.FloorBy}
}

// withLabels returns the labels of base and extra together.
func withLabels(base, extra map[string]string) map[string]string {
	for k, v := range extra {
		base[k] = v
	}
	return base
}
