package pipeline

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"slipway.dev/slipway/internal/ledger"
)

// This file is the fast path of a push webhook: the webhook names the new
// head of a branch, and the environments that track the branch start on it
// at once instead of after the fetch that would reveal it. The build
// fetches the commit, and checks it before anything runs: a commit that is
// not on the branch, or that is older than what the environment runs (a
// webhook that arrived late), is not deployed.

var commitHash = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// Pushed tells the controller that branch now points at commit, as a
// signed push webhook says. It never blocks; pushLoop acts on it. A
// commit that is not a full hash, or a deleted branch, is left to the poll.
func (c *Controller) Pushed(branch, commit string) {
	if !commitHash.MatchString(commit) || branch == "" {
		c.Poll()
		return
	}
	c.mu.Lock()
	c.pushed[branch] = commit
	c.mu.Unlock()
	select {
	case c.pushes <- struct{}{}:
	default:
	}
	c.Poll()
}

// pushLoop takes what webhooks announce as it comes, beside the poll loop
// (whose fetch the announcement is there not to wait for).
func (c *Controller) pushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.pushes:
			c.takePushes(ctx)
		}
	}
}

// takePushes queues the commits webhooks announced for the environments
// that track their branches, unless a poll has seen them already.
func (c *Controller) takePushes(ctx context.Context) {
	c.mu.Lock()
	if len(c.pushed) == 0 {
		c.mu.Unlock()
		return
	}
	pushed := c.pushed
	c.pushed = map[string]string{}
	c.mu.Unlock()
	for i := range c.cfg.Envs {
		e := &c.cfg.Envs[i]
		commit, ok := pushed[e.Branch]
		if !ok || !e.Automatic || e.From != "" {
			continue
		}
		if _, pinned := c.pinOf(e.Name); pinned {
			continue // whether the pin lets go is the poll's to say, from the fetched branch
		}
		c.mu.Lock()
		seen := c.lastHead[e.Name] == commit
		if !seen {
			c.announced[e.Name] = commit
		}
		c.mu.Unlock()
		if !seen {
			c.considerCommit(ctx, e, commit)
		}
	}
}

// announcedCheck returns the check a build of commit for e must pass when
// commit came from a webhook the poll has not confirmed yet; nil otherwise.
func (c *Controller) announcedCheck(e *Env, commit string) func(context.Context, string) error {
	c.mu.Lock()
	announced := c.announced[e.Name] == commit
	delete(c.announced, e.Name)
	c.mu.Unlock()
	if !announced {
		return nil
	}
	return func(ctx context.Context, commit string) error { return c.checkAnnounced(ctx, e, commit) }
}

// ErrNotOnBranch is the error of a commit a push webhook announced that the
// repository does not confirm.
var ErrNotOnBranch = errors.New("not the branch's head")

// checkAnnounced refuses a commit that is not on e's branch, or that is an
// ancestor of what e runs (the webhook of an earlier push, arriving late).
func (c *Controller) checkAnnounced(ctx context.Context, e *Env, commit string) error {
	head, err := c.deps.Repo.Head(ctx, e.Branch)
	if err != nil {
		return err
	}
	if head == commit {
		return nil
	}
	onBranch, err := c.deps.Repo.IsAncestor(ctx, commit, head)
	if err != nil {
		return err
	}
	if !onBranch {
		return fmt.Errorf("%s, named by a push webhook, is not on %s (at %s): %w; nothing built",
			shortHash(commit), e.Branch, shortHash(head), ErrNotOnBranch)
	}
	cur, err := c.deps.Store.Current(ctx, e.Name)
	if errors.Is(err, ledger.ErrNoDeployment) || err == nil && (cur.Commit == "" || cur.Commit == commit) {
		return nil // nothing runs yet, or this very commit
	}
	if err != nil {
		return err
	}
	older, err := c.deps.Repo.IsAncestor(ctx, commit, cur.Commit)
	if err != nil {
		return err
	}
	if older {
		return fmt.Errorf("%s, named by a push webhook, is older than %s, which %s runs: %w; nothing built",
			shortHash(commit), shortHash(cur.Commit), e.Name, ErrNotOnBranch)
	}
	return nil
}
