package local

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"slipway.dev/slipway/internal/deploy"
)

// readSecrets reads the values of spec's secrets from where their
// references say: slipway's own environment, or files. Errors name the
// secret and where it was looked for, never a value. A file's one
// trailing newline (echo's) is not part of the value.
func readSecrets(spec deploy.Spec) (map[string]string, error) {
	if len(spec.Secrets) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(spec.Secrets))
	for _, name := range slices.Sorted(maps.Keys(spec.Secrets)) {
		v, err := readSecret(spec.Secrets[name])
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

func readSecret(ref deploy.SecretRef) (string, error) {
	if ref.File != "" {
		b, err := os.ReadFile(ref.File)
		if err != nil {
			return "", fmt.Errorf("read %s: %w (create the file, readable by slipway, or fix secrets in the configuration)", ref.File, unwrapPath(err))
		}
		v := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(v, "\r"), nil
	}
	v, ok := os.LookupEnv(ref.Env)
	if !ok {
		return "", fmt.Errorf("slipway's environment has no %s: set it where slipway runs (its service's environment)", ref.Env)
	}
	return v, nil
}

// unwrapPath drops the *fs.PathError around err: the path is named already.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// secretVars are the variables of slipway's environment spec's secrets
// are read from.
func secretVars(spec deploy.Spec) map[string]bool {
	vars := map[string]bool{}
	for _, ref := range spec.Secrets {
		if ref.Env != "" {
			vars[ref.Env] = true
		}
	}
	return vars
}

// environWithout is this process's environment without the variables
// named in drop.
func environWithout(drop map[string]bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	return env
}
