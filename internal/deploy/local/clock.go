package local

import (
	"os"
	"strings"
	"time"
)

// clock is the time a supervisor goes by: the real one in production, a
// fake one in tests of time-based logic.
//
// Now is what every duration is measured from (readiness timeouts, drain
// grace periods, restart backoff, crash-loop windows): time.Now's readings
// carry the monotonic clock, which a jump of the wall clock (an NTP step,
// a manual change, a VM resumed) does not move. Wall stamps what status
// shows (since when a replica is in its state); nothing is measured from
// it.
type clock interface {
	Now() time.Time
	Wall() time.Time
	// After sends the time on the channel it returns once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the machine's clock.
type realClock struct{}

var _ clock = realClock{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) Wall() time.Time                        { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// EnvClockJump, set only by tests, is `@FILE`: a supervisor's wall clock
// (Wall) then runs ahead of the machine's by the duration FILE holds
// (`1h`, `-1h`; empty or missing: 0), read at each reading, as if the wall
// clock had jumped when the file was written. The monotonic clock
// everything is measured on does not move, as with a real jump.
const EnvClockJump = "SLIPWAY_CLOCK_JUMP"

// jumpingClock is the machine's clock with its wall clock moved by the
// duration in file (EnvClockJump).
type jumpingClock struct {
	realClock
	file string
}

func (c jumpingClock) Wall() time.Time {
	b, _ := os.ReadFile(c.file)
	d, _ := time.ParseDuration(strings.TrimSpace(string(b)))
	return time.Now().Add(d)
}

// supervisorClock is realClock, or jumpingClock when a test set
// EnvClockJump.
func supervisorClock() clock {
	if file, ok := strings.CutPrefix(os.Getenv(EnvClockJump), "@"); ok && file != "" {
		return jumpingClock{file: file}
	}
	return realClock{}
}
