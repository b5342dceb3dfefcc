package cli

import (
	"bytes"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

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
	var buf bytes.Buffer
	if err := config.Write(&buf, demo.Config(devAddr, prodAddr)); err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("demo: staging configuration: %w", err)
	}
	envs := mappingValue(doc.Content[0], "environments")
	if envs == nil || len(envs.Content) != 2 {
		return nil, fmt.Errorf("demo: staging configuration: the demo's environments are not dev and prod")
	}
	dev, prod := envs.Content[0], envs.Content[1]
	staging := cloneNode(dev)
	deleteKey(staging, "branch")
	setScalar(staging, "name", "staging")
	insertAfter(staging, "name", "from", "dev")
	setScalar(staging, "mode", config.ModeAutomatic)
	setScalar(staging, "listen", stagingAddr)
	setScalar(staging, "replicas", "1")
	if r := mappingValue(staging, "rollout"); r != nil {
		setScalar(r, "maxSurge", "1")
	}
	setScalar(prod, "requireVerifiedOn", "staging")
	envs.Content = []*yaml.Node{dev, staging, prod}

	buf.Reset()
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("demo: staging configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// mappingValue returns the value of key in the mapping m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setScalar(m *yaml.Node, key, value string) {
	if v := mappingValue(m, key); v != nil {
		*v = yaml.Node{Kind: yaml.ScalarNode, Value: value}
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Value: value})
}

// insertAfter puts key: value right after the entry of after in m.
func insertAfter(m *yaml.Node, after, key, value string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == after {
			kv := []*yaml.Node{{Kind: yaml.ScalarNode, Value: key}, {Kind: yaml.ScalarNode, Value: value}}
			m.Content = append(m.Content[:i+2], append(kv, m.Content[i+2:]...)...)
			return
		}
	}
	setScalar(m, key, value)
}

func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

func cloneNode(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, k := range n.Content {
		c.Content[i] = cloneNode(k)
	}
	return &c
}
