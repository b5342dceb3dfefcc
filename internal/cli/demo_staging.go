package cli

import (
	"bytes"
	"fmt"
	"os"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
)

// defaultStagingAddr is where staging's load balancer listens in
// `slipway demo --staging`.
const defaultStagingAddr = "127.0.0.1:8082"

// writeStagingConfig replaces the demo's configuration at path with its
// staging form (stagingConfig).
func writeStagingConfig(path string, o demoOptions) error {
	b, err := stagingConfig(o.devAddr, o.stagingAddr, o.prodAddr)
	if err != nil {
		return err
	}
	header := "# Written by `slipway demo --staging` at every start (its flags set the addresses).\n"
	if err := os.WriteFile(path, append([]byte(header), b...), 0o644); err != nil {
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	return nil
}

// stagingConfig is the demo's configuration with a staging environment
// between dev and prod: dev takes master; staging (automatic, from: dev)
// takes each commit once it is verified on dev, the same image; prod is
// released by hand and requires the commit to be verified on staging.
func stagingConfig(devAddr, stagingAddr, prodAddr string) ([]byte, error) {
	cfg := demo.Config(devAddr, prodAddr)
	if len(cfg.Environments) != 2 {
		return nil, fmt.Errorf("demo: staging configuration: the demo's environments are not dev and prod")
	}
	dev, prod := cfg.Environments[0], cfg.Environments[1]
	staging := dev
	staging.Name, staging.Branch, staging.From = "staging", "", "dev"
	staging.Mode, staging.Listen, staging.URL, staging.Replicas = config.ModeAutomatic, stagingAddr, "", 1
	staging.Env = map[string]string{}
	for k, v := range dev.Env {
		staging.Env[k] = v
	}
	prod.RequireVerifiedOn = "staging"
	cfg.Environments = []config.Environment{dev, staging, prod}
	var buf bytes.Buffer
	if err := config.Write(&buf, cfg); err != nil {
		return nil, fmt.Errorf("demo: staging configuration: %w", err)
	}
	return buf.Bytes(), nil
}
