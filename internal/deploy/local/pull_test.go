package local

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slipway.dev/slipway/internal/registry"
)

// TestPullThroughRegistryClient checks that the local runtime pulls with
// slipway's registry client: its credentials are sent, and a registry that
// fails a layer once (503) is asked again rather than failing the deploy.
func TestPullThroughRegistryClient(t *testing.T) {
	t.Parallel()
	const user, pass = "deployer", "s3cret"
	inner := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	var failed, unauthorized atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			unauthorized.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && failed.CompareAndSwap(0, 1) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	img := fixtureImage(t, strings.Repeat("4d", 20))
	ref, err := name.ParseReference(host + "/app:latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	unauthorized.Store(0)

	keychain := staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}
	reg := registry.NewClient(registry.WithKeychain(keychain),
		registry.WithBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 3}))
	u := &unpacker{dir: t.TempDir(), reg: reg}
	files, err := u.unpack(t.Context(), host+"/app@"+d.String())
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	if files.Digest != d.String() || len(files.Entrypoint) == 0 {
		t.Errorf("unpacked %+v, want the fixture image %s", files, d)
	}
	if failed.Load() != 1 {
		t.Error("the registry never failed a layer: the test checks no retry")
	}

	// Without the credentials the pull is refused, and says so.
	anon := registry.NewClient(registry.WithKeychain(staticKeychain{authn.Anonymous}),
		registry.WithBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}))
	u = &unpacker{dir: t.TempDir(), reg: anon}
	if _, err := u.unpack(t.Context(), host+"/app@"+d.String()); err == nil || !strings.Contains(err.Error(), "pull") {
		t.Errorf("unpack without credentials: %v, want a failed pull", err)
	}
}

// staticKeychain gives one authenticator for every registry.
type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }
