package pipeline

import (
	"context"
	"fmt"
	"strings"

	"slipway.dev/slipway/internal/ledger"
)

// What slipway does when someone rewrites the repository behind its back:
// the ledger, not git, says what ran and what was released, so nothing
// unexpected is deployed; each rewrite is said in the log and in a note on
// the deployment it concerns.
//
//   - A branch an automatic environment follows is force-pushed: the new
//     head is deployed as any new head is, with a note that the commit the
//     environment ran is no longer on the branch (rewrittenNote). That
//     commit can no longer be released (it is not contained in the branch).
//   - A release branch is deleted: the environment keeps running what it
//     runs, the log says so once (noteBranchGone), and the next release or
//     rollback creates the branch again.
//   - A release tag is moved to another commit: a rollback to it goes to the
//     commit and image the ledger recorded for that release, with a note
//     naming where the tag now points (movedTagNote).

// rewrittenNote returns the note of a deployment of commit to the
// automatic environment e when e's branch no longer contains prev's
// commit, the one e ran: the branch was rewritten.
func (c *Controller) rewrittenNote(ctx context.Context, e *Env, prev ledger.Deployment, commit string) string {
	if e.From != "" || e.Branch == "" || prev.Commit == "" || prev.Commit == commit || prev.Kind == ledger.KindStop {
		return ""
	}
	on, err := c.deps.Repo.IsAncestor(ctx, prev.Commit, commit)
	if err != nil || on {
		return ""
	}
	back, err := c.deps.Repo.IsAncestor(ctx, commit, prev.Commit)
	if err != nil {
		return ""
	}
	how := "rewritten (force-pushed)"
	if back {
		how = "moved back"
	}
	note := fmt.Sprintf("%s was %s: %s, which %s ran, is no longer on it", e.Branch, how, shortHash(prev.Commit), e.Name)
	c.log.Warn("branch rewritten", "env", e.Name, "branch", e.Branch, "ran", shortHash(prev.Commit), "head", shortHash(commit),
		"note", note)
	return note
}

// noteBranchGone logs once that e's release branch no longer exists in the
// repository (head is ""), and once that it is back.
func (c *Controller) noteBranchGone(e *Env, head string) {
	c.mu.Lock()
	was := c.gone[e.Name]
	c.gone[e.Name] = head == ""
	c.mu.Unlock()
	switch {
	case head == "" && !was:
		c.log.Warn("release branch deleted from the repository; what runs keeps running, and the next release or rollback creates the branch again",
			"env", e.Name, "branch", e.Branch)
	case head != "" && was:
		c.log.Info("release branch is back", "env", e.Name, "branch", e.Branch, "head", shortHash(head))
	}
}

// movedTagNote returns the note of a rollback to target, the release to,
// when target is a release name whose git tag no longer points at the
// release's commit.
func (c *Controller) movedTagNote(ctx context.Context, e *Env, target string, to ledger.Deployment) string {
	if !strings.HasPrefix(target, "RC") || to.ReleaseName != target {
		return ""
	}
	tagged, err := c.deps.Repo.Resolve(ctx, "refs/tags/"+target)
	if err != nil || tagged == to.Commit {
		return ""
	}
	note := fmt.Sprintf("tag %s was moved to %s in the repository; rolled back to %s, the commit %s released (as the ledger recorded it)",
		target, shortHash(tagged), shortHash(to.Commit), target)
	c.log.Warn("release tag moved", "env", e.Name, "tag", target, "tagged", shortHash(tagged), "released", shortHash(to.Commit))
	return note
}
