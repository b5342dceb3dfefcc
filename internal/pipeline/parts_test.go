package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// The runtime gets an environment's front-end settings as configured.
func TestSpecCarriesFrontend(t *testing.T) {
	c := config.Default()
	c.App = "birthday-app"
	e := &c.Environments[1]
	e.Frontend.MaxHeaderBytes = 64 << 10
	e.Frontend.BodyTimeout = 5 * time.Second
	e.Frontend.TrustedProxies = []string{"10.0.0.0/8"}
	e.Frontend.TLS = config.TLS{ACME: config.ACME{Domains: []string{"app.example.com"}, Email: "ops@example.com"}, RedirectFrom: ":80"}
	got, err := Runtime{Config: c}.Spec(ledger.Deployment{Env: "prod", Commit: strings.Repeat("a", 40), Replicas: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := deploy.Frontend{
		MaxHeaderBytes: 64 << 10, HeaderTimeout: 10 * time.Second, BodyTimeout: 5 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxConnections: 10000,
		TrustedProxies: []string{"10.0.0.0/8"},
		TLS:            &deploy.TLS{ACMEDomains: []string{"app.example.com"}, ACMEEmail: "ops@example.com", RedirectFrom: ":80"},
	}
	if diff := cmp.Diff(want, got.Frontend); diff != "" {
		t.Errorf("prod's front end (-want +got):\n%s", diff)
	}
	dev, err := Runtime{Config: c}.Spec(ledger.Deployment{Env: "dev", Commit: strings.Repeat("a", 40), Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Frontend.TLS != nil {
		t.Errorf("dev has no TLS configured, but its spec carries %+v", dev.Frontend.TLS)
	}
}
