package cli

import (
	"bytes"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

func TestRenderNotifications(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	list := []ledger.Notification{
		{DeliveryID: "5f0c6c1be2a94c1d8e0e7d0f3b9a1c22", App: "web", Event: "auto_rollback", Destination: "chat", State: ledger.NotificationPending,
			Attempts: 3, CreatedAt: now.Add(-7 * time.Second), NextAttemptAt: now.Add(4 * time.Second),
			LastError: "post to https://hooks.example.com/…: 503 Service Unavailable: down for\nmaintenance"},
		{DeliveryID: "0b6a9b0d0e8f4e6f9a1b2c3d4e5f6a7b", App: "web", Event: "released", Destination: "audit", State: ledger.NotificationDelivered,
			Attempts: 1, CreatedAt: now.Add(-time.Hour), DeliveredAt: now.Add(-time.Hour)},
		{DeliveryID: "9a8b7c6d5e4f30211f2e3d4c5b6a7980", App: "api", Event: "build.failed", Destination: "chat", State: ledger.NotificationFailed,
			Attempts: 154, CreatedAt: now.Add(-25 * time.Hour), LastError: "given up after 154 attempts over 24h0m0s: post to https://hooks.example.com/…: dial tcp 10.0.0.9:443: connect: connection refused"},
	}
	var buf bytes.Buffer
	if err := renderNotifications(&buf, list, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "notifications.golden", buf.Bytes())
	buf.Reset()
	if err := renderNotifications(&buf, nil, now); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "No notifications yet (notifications in slipway.yaml: docs/configuration.md).\n" {
		t.Errorf("no rows: %q", got)
	}
}
