package build

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// StillEvery is how often a step that runs long says that it still runs.
const StillEvery = 10 * time.Second

// Step names, as the build log, the progress lines and the controller's log
// show them.
const (
	StepModules  = "fetching modules"
	StepTesting  = "testing"
	StepBuilding = "building"
	StepImage    = "making the image"
	StepPushing  = "pushing"
)

// steps tells people what a build is doing while they wait: each long
// step's start, its end with how long it took, and every StillEvery in
// between that it still runs. Each line goes to the build log (as a "# "
// comment), to the builder's Progress (prefixed by the short commit) and to
// its Logger.
type steps struct {
	short  string       // the commit, 7 hex digits
	build  int64        // the ledger row
	log    io.Writer    // the build log
	out    io.Writer    // progress lines; nil discards them
	logger *slog.Logger // never nil

	mu sync.Mutex // one line at a time
}

// step is one running step of a build.
type step struct {
	s     *steps
	name  string
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// start reports that the step name begins; detail (the command, say) is
// added to its first line when not empty. The step must be ended.
func (s *steps) start(name, detail string) *step {
	line := name
	if detail != "" {
		line += ": " + detail
	}
	s.line(line)
	s.logger.Info(name, "commit", s.short, "build", s.build)
	st := &step{s: s, name: name, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go st.still()
	return st
}

// still says every StillEvery that the step still runs, until it ends.
func (st *step) still() {
	defer close(st.done)
	t := time.NewTicker(StillEvery)
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			return
		case <-t.C:
			elapsed := time.Since(st.start).Round(time.Second)
			st.s.line(fmt.Sprintf("still %s, %d s", st.name, int(elapsed.Seconds())))
			st.s.logger.Info("still "+st.name, "commit", st.s.short, "build", st.s.build, "elapsed", elapsed)
		}
	}
}

// halt stops the step's reports and returns how long it ran.
func (st *step) halt() time.Duration {
	st.once.Do(func() { close(st.stop) })
	<-st.done
	return time.Since(st.start)
}

// end reports that the step succeeded, as "MSG[ DETAIL] in DURATION[AFTER]"
// for people and as msg with attrs and the duration in the log; it returns
// the step's duration.
func (st *step) end(msg, detail, after string, attrs ...any) time.Duration {
	d := st.halt()
	line := msg
	if detail != "" {
		line += " " + detail
	}
	st.s.line(fmt.Sprintf("%s in %s%s", line, roundDuration(d), after))
	attrs = append([]any{"commit", st.s.short, "build", st.s.build, "step", st.name}, attrs...)
	st.s.logger.Info(msg, append(attrs, "duration", roundDuration(d))...)
	return d
}

// fail reports that the step failed, unless it ended already; the error
// itself is the caller's to return.
func (st *step) fail() time.Duration {
	select {
	case <-st.done:
		return time.Since(st.start)
	default:
	}
	d := st.halt()
	st.s.line(fmt.Sprintf("%s failed after %s", st.name, roundDuration(d)))
	st.s.logger.Info(st.name+" failed", "commit", st.s.short, "build", st.s.build, "duration", roundDuration(d))
	return d
}

// line writes one line to the build log and to the progress writer.
func (s *steps) line(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log != nil {
		fmt.Fprintf(s.log, "# %s\n", text)
	}
	if s.out != nil {
		fmt.Fprintf(s.out, "%s: %s\n", s.short, text)
	}
}

// roundDuration keeps a duration readable: milliseconds below a second,
// hundredths of seconds above.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
