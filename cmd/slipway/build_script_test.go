//go:build integration

package main

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"slipway.dev/slipway/internal/testenv"
)

// TestBuildScripts runs the sessions in testdata/build: real builds of the
// sample app with the embedded registry.
func TestBuildScripts(t *testing.T) {
	testenv.LookPath(t, "git")
	testscript.Run(t, scriptParams(t, "testdata/build"))
}
