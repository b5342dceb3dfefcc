package local

import "time"

// clock is the time a supervisor goes by: the real one in production, a
// fake one in tests of time-based logic.
type clock interface {
	Now() time.Time
	// After sends the time on the channel it returns once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the machine's clock.
type realClock struct{}

var _ clock = realClock{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
