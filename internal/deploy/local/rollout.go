package local

import (
	"fmt"
	"slices"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// maxPlanWait is the longest a rollout goes without planning again when
// nothing changes.
const maxPlanWait = time.Second

// replicaView is what the rollout planner knows of a replica at one moment.
type replicaView struct {
	name       string
	revision   string
	ready      bool
	everReady  bool
	quickExits int
	created    time.Time
	draining   bool
	// Why it is not ready, for a rollout failure.
	state    string
	message  string
	lastExit string
}

// rolloutPlan is what to do next to bring an environment to n ready
// replicas of one revision.
type rolloutPlan struct {
	// retire names the replicas to take out of the pool and stop, in order.
	retire []string
	// start is how many replicas of the revision to start.
	start int
	// done: nothing is left to do once the retired replicas have stopped.
	done bool
	// fail, when set, aborts the rollout; nothing else is to be done.
	fail *rolloutFailure
	// next is when to plan again if no replica changed before.
	next time.Time
}

// rolloutFailure is why a rollout cannot succeed.
type rolloutFailure struct {
	replica string
	reason  string
}

// planRollout decides the next step towards n ready replicas of revision
// rev and no other, within the strategy's surge and unavailability limits,
// from the replicas as they are at now. Draining replicas are already on
// their way out and count for nothing.
//
// A replica of rev that was never ready fails the rollout when it exited
// failRolloutAfter times or is not ready within the strategy's
// ReadyTimeout. Extra replicas of rev go first (unready ones, then the
// newest); replicas of other revisions are retired unready ones first, and
// ready ones only while n−MaxUnavailable replicas stay ready; new ones are
// started while the total stays within n+MaxSurge.
func planRollout(rev string, n int, st deploy.Strategy, replicas []replicaView, now time.Time) rolloutPlan {
	var mine, others []replicaView
	for _, r := range replicas {
		switch {
		case r.draining:
		case r.revision == rev:
			mine = append(mine, r)
		default:
			others = append(others, r)
		}
	}
	var p rolloutPlan
	var deadline time.Time // the earliest a new replica must be ready by
	for _, r := range mine {
		if r.everReady {
			continue
		}
		d := r.created.Add(st.ReadyTimeout)
		switch {
		case r.quickExits >= failRolloutAfter:
			p.fail = &rolloutFailure{r.name, fmt.Sprintf("exited %d times before becoming ready (last: %s)", r.quickExits, r.lastExit)}
			return p
		case now.After(d):
			why := r.message
			if why == "" {
				why = r.state
			}
			p.fail = &rolloutFailure{r.name, fmt.Sprintf("not ready within %s (%s)", st.ReadyTimeout, why)}
			return p
		}
		if deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	readyMine, readyOthers := countReady(mine), countReady(others)
	// Too many of this revision (scaling down): unready ones first, then
	// the newest.
	if len(mine) > n {
		slices.SortStableFunc(mine, func(a, b replicaView) int {
			if a.ready != b.ready {
				if !a.ready {
					return -1
				}
				return 1
			}
			return b.created.Compare(a.created)
		})
		for _, r := range mine[:len(mine)-n] {
			p.retire = append(p.retire, r.name)
		}
		mine = mine[len(mine)-n:]
	}
	if readyMine >= n && len(others) == 0 && len(mine) == n {
		p.done = true
		return p
	}
	// Retire other revisions, unready ones first, while enough replicas
	// stay available.
	available := readyMine + readyOthers
	minAvailable := n - st.MaxUnavailable
	slices.SortStableFunc(others, func(a, b replicaView) int {
		if !a.ready && b.ready {
			return -1
		}
		if a.ready && !b.ready {
			return 1
		}
		return 0
	})
	kept := 0
	for _, r := range others {
		switch {
		case !r.ready:
			p.retire = append(p.retire, r.name)
		case available-1 >= minAvailable:
			p.retire = append(p.retire, r.name)
			available--
		default:
			kept++
		}
	}
	if total := len(mine) + kept; len(mine) < n && total < n+st.MaxSurge {
		p.start = min(n-len(mine), n+st.MaxSurge-total)
		if d := now.Add(st.ReadyTimeout); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	p.next = now.Add(maxPlanWait)
	if !deadline.IsZero() {
		// Just past the deadline, so that a replica late by then is late.
		p.next = minTime(p.next, deadline.Add(time.Millisecond))
	}
	return p
}

func countReady(rs []replicaView) int {
	n := 0
	for _, r := range rs {
		if r.ready {
			n++
		}
	}
	return n
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
