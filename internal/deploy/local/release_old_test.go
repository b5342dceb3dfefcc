//go:build integration

package local

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// TestReleaseOnOlderSupervisor: a supervisor an older slipway started has
// no release phase. Asked to run one, it answers its mux's plain 404; the
// release fails with a message that says so and what to do, and the
// supervisor is left serving.
func TestReleaseOnOlderSupervisor(t *testing.T) {
	_, v2r, _ := fixtureReleases(t)
	dir := shortTempDir(t)
	b := newTestBackend(t, dir)
	envDir := b.ownDir("old")
	if err := os.MkdirAll(envDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(envDir, socketName))
	if err != nil {
		t.Fatal(err)
	}
	stops := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, deploy.Status{Environment: "old", Isolation: deploy.IsolationNamespaces})
	})
	mux.HandleFunc("GET /spec", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, baseSpec("old"))
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		stops++
		writeJSON(w, http.StatusOK, struct{}{})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	spec := baseSpec("old")
	spec.Replicas = 1
	spec.Image, spec.Commit, spec.Version = v2r.Image, v2r.Commit, v2r.Version
	job := deploy.ReleaseJob{ID: "3", Command: []string{"/app/fixture", "release"}, Timeout: time.Minute}
	var out deploy.TailBuffer
	err = b.RunRelease(t.Context(), spec, job, &out)
	var re *deploy.ReleaseError
	if !errors.As(err, &re) {
		t.Fatalf("RunRelease: %v; want a release error", err)
	}
	for _, want := range []string{"started by an older slipway", "keeps serving", filepath.Join(envDir, "supervisor.pid"), "release again", "remove release.command for old"} {
		if !strings.Contains(re.Reason, want) {
			t.Errorf("the reason lacks %q: %s", want, re.Reason)
		}
	}
	if stops != 0 {
		t.Errorf("a supervisor that serves was asked to stop %d times", stops)
	}
}
