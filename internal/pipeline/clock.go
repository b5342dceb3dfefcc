package pipeline

import "time"

// The controller reads two clocks. The wall clock (Deps.Now) stamps the
// ledger and decides calendar rules (freeze windows, release names). How
// long something has lasted is read from a monotonic clock
// (Deps.Monotonic), which a jump of the wall clock (an NTP step, a manual
// change, a VM resumed) does not move: a commit verified a minute ago is
// not taken as verified for an hour because the wall clock jumped ahead,
// nor held back an hour because it jumped back.
//
// A time read back from the ledger has only its wall reading. So the
// controller notes, for each such time it goes by, both clocks when it
// first sees it (when it writes it, for what it verifies itself), and from
// then on counts on the monotonic clock: only what happened before this
// process saw it (before a restart) is measured on the wall clock.

// sighting is when the controller first saw a ledger time, on both clocks.
type sighting struct {
	wall time.Time
	mono time.Duration
}

// maxSightings bounds the sightings kept: only the latest verifications
// are ever asked about.
const maxSightings = 256

// monotonicSince returns a monotonic clock that starts at zero now.
func monotonicSince() func() time.Duration {
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

// sight notes at, a time written to the ledger just now, as seen now.
func (c *Controller) sight(at time.Time) {
	if at.IsZero() {
		return
	}
	c.since(at)
}

// since returns how long ago the ledger time at was: on the wall clock up
// to when the controller first saw it, on the monotonic clock from then.
func (c *Controller) since(at time.Time) time.Duration {
	key := at.UnixNano()
	mono := c.deps.Monotonic()
	c.clockMu.Lock()
	defer c.clockMu.Unlock()
	s, ok := c.sightings[key]
	if !ok {
		wall := c.now()
		s = sighting{wall: wall, mono: mono}
		if wall.Before(at) {
			s.wall = at // written by a clock ahead of ours: count from now
		}
		if c.sightings == nil || len(c.sightings) >= maxSightings {
			c.sightings = map[int64]sighting{}
		}
		c.sightings[key] = s
	}
	return s.wall.Sub(at) + (mono - s.mono)
}
