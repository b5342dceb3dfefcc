//go:build tools

// Package acme records the programs scripts/testacme builds from this
// module: Pebble, a small ACME server for tests, and pebble-challtestsrv,
// the DNS server that points the test domains at 127.0.0.1.
package acme

import (
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble"
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"
)
