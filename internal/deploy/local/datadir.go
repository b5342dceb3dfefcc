package local

import (
	"maps"
	"path/filepath"
	"regexp"

	"slipway.dev/slipway/internal/deploy"
)

// dataDirRef is $DATA_DIR or ${DATA_DIR}, which stands for the
// environment's data directory in the values of a spec's Env (as in the
// default databaseURL, config.LocalDatabaseURL); replicas get the
// directory itself as DATA_DIR.
var dataDirRef = regexp.MustCompile(`\$(?:\{DATA_DIR\}|DATA_DIR\b)`)

// hostDataDir is the data directory of the environment whose directory is
// envDir, on this machine.
func hostDataDir(envDir string) string { return filepath.Join(envDir, "data") }

// replicaDataDir is the data directory of the environment whose directory
// is envDir as its replicas see it: where the sandbox mounts it, or the
// directory itself for plain processes.
func replicaDataDir(envDir string, iso deploy.Isolation) string {
	if iso == deploy.IsolationNamespaces || iso == deploy.IsolationSandbox {
		return sandboxDataDir
	}
	return hostDataDir(envDir)
}

// resolveDataDir returns spec with $DATA_DIR and ${DATA_DIR} in the values
// of its Env replaced by dir. Nothing else is expanded: a $ in a password
// stays as it is.
func resolveDataDir(spec deploy.Spec, dir string) deploy.Spec {
	var env map[string]string
	for k, v := range spec.Env {
		if nv := dataDirRef.ReplaceAllLiteralString(v, dir); nv != v {
			if env == nil {
				env = maps.Clone(spec.Env)
			}
			env[k] = nv
		}
	}
	if env != nil {
		spec.Env = env
	}
	return spec
}
