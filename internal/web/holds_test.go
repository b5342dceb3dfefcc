package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// The overview says which environment is locked, frozen or pinned, and
// which commit waits and why.
func TestOverviewShowsHolds(t *testing.T) {
	app := sampleApp("web")
	dev, prod := &app.status.Environments[0], &app.status.Environments[1]
	dev.Pinned = &ledger.Pin{Env: "dev", Commit: hash('a'), From: hash('b'), Head: hash('b'), Since: t0}
	dev.Frozen = &pipeline.Frozen{Window: "weekend", Until: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)}
	dev.Waiting = &pipeline.Waiting{Commit: hash('c'), ShortCommit: hash('c')[:7], Reason: "dev is frozen (weekend) until 2026-11-30 00:00 UTC"}
	prod.Locked = &ledger.Lock{Env: "prod", Reason: "black <friday>", By: "alice@laptop (lock command)", Since: t0}
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}})
	got, err := h.renderOverview(h.readOverview(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`pinned on <code>aaaaaaa</code> by a rollback`,
		`frozen (weekend) until 2026-11-30 00:00:00 UTC`,
		`<code>ccccccc</code> waits: dev is frozen (weekend) until 2026-11-30 00:00 UTC`,
		`locked by alice@laptop (lock command): black &lt;friday&gt;`,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the overview lacks %q:\n%s", want, got)
		}
	}
}
