//go:build integration

package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/gitsource"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/testenv"
)

// gitRemote is a bare repository standing for the team's remote, and a
// clone of it where the test commits and pushes as a person would.
type gitRemote struct {
	t      *testing.T
	origin string
	work   string
}

func newGitRemote(t *testing.T) *gitRemote {
	testenv.LookPath(t, "git")
	dir := t.TempDir()
	r := &gitRemote{t: t, origin: filepath.Join(dir, "origin.git"), work: filepath.Join(dir, "work")}
	testenv.Git(t, dir, "init", "-q", "--bare", "-b", "master", r.origin)
	testenv.Git(t, dir, "clone", "-q", r.origin, r.work)
	return r
}

// commit makes a commit on what the clone has checked out.
func (r *gitRemote) commit(name string) string {
	if err := os.WriteFile(filepath.Join(r.work, name), []byte(name), 0o644); err != nil {
		r.t.Fatal(err)
	}
	testenv.Git(r.t, r.work, "add", name)
	testenv.Git(r.t, r.work, "commit", "-q", "-m", name)
	return testenv.Git(r.t, r.work, "rev-parse", "HEAD")
}

func (r *gitRemote) git(args ...string) string { return testenv.Git(r.t, r.work, args...) }

// gitRepo is the real repository as the controller drives it (what
// internal/apps wires, without its caches).
type gitRepo struct{ *gitsource.Source }

func (g gitRepo) Commits(ctx context.Context, exclude, include string, limit int) ([]Commit, error) {
	entries, err := g.Log(ctx, exclude, include, limit)
	var out []Commit
	for _, e := range entries {
		out = append(out, Commit{Hash: e.Hash, Short: shortHash(e.Hash), Subject: e.Subject, Author: e.Author, Time: e.Time})
	}
	return out, err
}

// TestRewrittenRemote has people rewrite the repository behind slipway's
// back — master force-pushed, a release tag moved, the release branch
// deleted — on a real git remote: slipway goes by its ledger, deploys
// nothing unexpected, and says what happened.
func TestRewrittenRemote(t *testing.T) {
	ctx := context.Background()
	remote := newGitRemote(t)
	a := remote.commit("a")
	remote.git("push", "-q", "origin", "master")
	h := newHarness(t)
	src := gitsource.New(remote.origin, filepath.Join(t.TempDir(), gitsource.MirrorDir))
	h.repoOverride = gitRepo{src}
	h.start()
	devTakes := func(commit string) ledger.Deployment {
		t.Helper()
		var d ledger.Deployment
		h.waitFor("dev to take "+shortHash(commit), func() bool {
			var err error
			d, err = h.store.LatestForCommit(ctx, "dev", ledger.KindDeploy, commit)
			return err == nil && d.State.Final()
		})
		if d.State != ledger.StateSucceeded {
			t.Fatalf("dev deployment of %s: %s (%s)", shortHash(commit), d.State, d.Reason)
		}
		return d
	}
	devTakes(a)
	rel1 := h.release(a)
	b := remote.commit("b")
	remote.git("push", "-q", "origin", "master")
	devTakes(b)
	h.clock.Add(time.Minute)
	rel2 := h.release(b)
	if rel1.State != ledger.StateSucceeded || rel2.State != ledger.StateSucceeded {
		t.Fatalf("releases: %+v, %+v", rel1, rel2)
	}

	// master is force-pushed: b, which dev and prod run, is dropped for b2.
	remote.git("reset", "-q", "--hard", a)
	b2 := remote.commit("b2")
	remote.git("push", "-q", "--force", "origin", "master")
	d := devTakes(b2)
	if want := "master was rewritten (force-pushed): " + shortHash(b) + ", which dev ran, is no longer on it"; d.Note != want {
		t.Errorf("note of dev's deployment of the new head = %q, want %q", d.Note, want)
	}
	if got := h.deployer.running("prod").digest; got != digestOf(b) {
		t.Errorf("prod runs %s, want b's image still", got)
	}
	// b is no longer on master: it cannot be released again (after a
	// rollback, say).
	_, err := h.c.Release(ctx, ReleaseRequest{Commit: b})
	if !errors.Is(err, ErrNotInSource) && !errors.Is(err, ErrAlreadyLive) {
		t.Errorf("release of the dropped commit = %v, want it refused", err)
	}

	// Someone moves the tag of the first release to b2: a rollback to it
	// goes to what the ledger says it released, a.
	remote.git("fetch", "-q", "--tags")
	remote.git("tag", "-f", "-a", "-m", "moved", rel1.ReleaseName, b2)
	remote.git("push", "-q", "--force", "origin", "refs/tags/"+rel1.ReleaseName)
	h.waitFor("the mirror to see the tag moved", func() bool {
		got, _ := src.Resolve(ctx, "refs/tags/"+rel1.ReleaseName)
		return got == b2
	})
	rb, err := h.c.Rollback(ctx, RollbackRequest{Target: rel1.ReleaseName})
	if err != nil {
		t.Fatal(err)
	}
	rb = h.waitFinal(rb.ID)
	if rb.State != ledger.StateSucceeded || rb.Commit != a || rb.Digest != digestOf(a) {
		t.Errorf("rollback to %s = %+v, want a (its release) succeeded", rel1.ReleaseName, rb)
	}
	if !strings.Contains(rb.Note, "tag "+rel1.ReleaseName+" was moved to "+shortHash(b2)) {
		t.Errorf("rollback note = %q, want it to say the tag was moved", rb.Note)
	}
	if got := h.deployer.running("prod").digest; got != digestOf(a) {
		t.Errorf("prod runs %s after the rollback, want a's image", got)
	}
	if got := remote.git("ls-remote", "origin", "refs/heads/release"); !strings.HasPrefix(got, a) {
		t.Errorf("release branch after the rollback: %q, want a", got)
	}

	// Someone deletes the release branch: prod keeps running a; the next
	// release creates the branch again.
	remote.git("push", "-q", "origin", ":refs/heads/release")
	h.c.Poll()
	h.waitFor("the poll to see the branch gone", func() bool {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return h.c.gone["prod"]
	})
	if got := h.deployer.running("prod").digest; got != digestOf(a) {
		t.Errorf("prod runs %s with its branch deleted, want a's image", got)
	}
	h.clock.Add(time.Minute)
	rel3 := h.release(b2)
	if rel3.State != ledger.StateSucceeded || h.deployer.running("prod").digest != digestOf(b2) {
		t.Errorf("release of b2 with the branch deleted = %+v", rel3)
	}
	if got := remote.git("ls-remote", "origin", "refs/heads/release"); !strings.HasPrefix(got, b2) {
		t.Errorf("release branch after the release: %q, want b2", got)
	}
}
