package local

import (
	"archive/tar"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"slipway.dev/slipway/internal/deploy"
)

// TestReplicaRunsImageConfig: a replica runs what the image's configuration
// says: its entrypoint with its cmd as arguments, in its working directory,
// with its environment, as its user (in the sandbox, as root).
func TestReplicaRunsImageConfig(t *testing.T) {
	t.Parallel()
	reg := newTestRegistry(t)
	work := tarLayer(t, tarEntry{hdr: tar.Header{Name: "work/", Typeflag: tar.TypeDir, Mode: 0o755}})
	c := strings.Repeat("5e", 20)
	img := fixtureImage(t, c, work)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Cmd = []string{"serve", "--from-cmd"}
	cf.Config.Env = append(cf.Config.Env, "FIXTURE_GREETING=from the image", "PORT=1")
	cf.Config.WorkingDir = "/work"
	cf.Config.User = "65532:65533"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("cfg")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = reg.push(t, "cfg", img), c, c[:7], 1
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := b.Status(t.Context(), "cfg")
	if err != nil {
		t.Fatal(err)
	}
	_, body := httpGet(t, st.URL+"/self?env=FIXTURE_GREETING")
	var got struct {
		Args     []string `json:"args"`
		Cwd      string   `json:"cwd"`
		UID, GID int
		Env      string `json:"env"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/self answered %q: %v", body, err)
	}
	t.Logf("the replica: %+v (isolation %s)", got, st.Isolation)
	if diff := cmp.Diff([]string{"/app/fixture", "serve", "--from-cmd"}, got.Args); diff != "" {
		t.Errorf("arguments: entrypoint + cmd (-want +got):\n%s", diff)
	}
	if got.Env != "from the image" {
		t.Errorf("FIXTURE_GREETING = %q, want the image's", got.Env)
	}
	// The replica answers on the port the runtime gave it (PORT), not the
	// image's PORT=1: it is reached at all.
	if !strings.HasSuffix(got.Cwd, "/work") {
		t.Errorf("working directory %q, want the image's /work", got.Cwd)
	}
	if st.Isolation == deploy.IsolationSandbox {
		if got.Cwd != "/work" || got.UID != 65532 || got.GID != 65533 {
			t.Errorf("in the sandbox: cwd %q, uid %d, gid %d; want /work, the image's user 65532:65533", got.Cwd, got.UID, got.GID)
		}
	} else if os.Geteuid() == 0 && (got.UID != 65532 || got.GID != 65533) {
		t.Errorf("uid %d, gid %d; want the image's user 65532:65533", got.UID, got.GID)
	}
}
