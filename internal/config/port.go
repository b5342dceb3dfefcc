package config

// PortWritten reports whether the configuration's file sets build.port.
// An app whose images slipway does not compile (build.kind dockerfile or
// image) listens on the port its image exposes when it does not.
func (c *Config) PortWritten() bool {
	_, ok := c.pos["build.port"]
	return ok
}
