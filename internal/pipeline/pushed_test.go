package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/ledger"
)

// TestPushedStartsBeforeTheFetch: a head announced by a push webhook is
// built and deployed while the poll's fetch has not returned.
func TestPushedStartsBeforeTheFetch(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	h.pushMaster(c1)

	c2 := h.repo.commit("c2", c1)
	h.repo.mu.Lock()
	h.repo.fetchGate = make(chan struct{}) // every fetch hangs from now on
	h.repo.mu.Unlock()
	h.repo.setBranch("master", c2)
	h.c.Pushed("master", c2)
	d := h.waitVerified("dev", c2)
	if d.State != ledger.StateSucceeded {
		t.Errorf("c2 on dev: %s at %s: %s", d.State, d.Step, d.Reason)
	}
	h.repo.mu.Lock()
	close(h.repo.fetchGate)
	h.repo.fetchGate = nil
	h.repo.mu.Unlock()
	h.pollOnce()
	if n := strings.Count(strings.Join(h.builder.builds, " "), c2); n != 1 {
		t.Errorf("c2 built %d times, want once (the webhook's, not again for the poll): %v", n, h.builder.builds)
	}
}

// TestPushedRefusesWhatIsNotTheBranchsNews: a webhook naming a commit not
// on the branch, or older than what runs, deploys nothing.
func TestPushedRefusesWhatIsNotTheBranchsNews(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	stray := h.repo.commit("stray", c1)
	h.start()
	h.pushMaster(c3)

	for _, tt := range []struct{ commit, want string }{
		{stray, "is not on master"},
		{c2, "is older than " + shortHash(c3)},
	} {
		h.c.Pushed("master", tt.commit)
		var d ledger.Deployment
		h.waitFor(shortHash(tt.commit)+" to be refused", func() bool {
			var err error
			d, err = h.store.LatestForCommit(context.Background(), "dev", ledger.KindDeploy, tt.commit)
			return err == nil && d.State == ledger.StateFailed
		})
		if !strings.Contains(d.Reason, tt.want) || !strings.Contains(d.Reason, "nothing built") {
			t.Errorf("%s: reason %q, want it to say %q", shortHash(tt.commit), d.Reason, tt.want)
		}
	}
	if got := h.deployer.running("dev").digest; got != digestOf(c3) {
		t.Errorf("dev runs %s, want c3's image", got)
	}
	if !errors.Is(h.c.checkAnnounced(context.Background(), h.c.envs["dev"], stray), ErrNotOnBranch) {
		t.Errorf("checkAnnounced(stray) is not ErrNotOnBranch")
	}
}
