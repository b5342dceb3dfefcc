package web

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"time"
)

// live keeps the overview current for the browsers that watch it: one
// refresher reads and renders the overview once per change and hands the
// same bytes to every stream. It runs only while streams are open.
type live struct {
	h *Handler

	mu      sync.Mutex
	streams map[*stream]struct{}
	frame   []byte // the latest overview, as an SSE event
	seq     uint64 // counts frames
	cancel  context.CancelFunc
	done    chan struct{}
}

// stream is one browser's event stream: wake receives (coalesced) when
// a newer frame is there.
type stream struct {
	wake chan struct{}
	seq  uint64
}

func newLive(h *Handler) *live {
	return &live{h: h, streams: map[*stream]struct{}{}}
}

// join adds a stream, starting the refresher for the first one. The new
// stream is woken at once when a frame exists; otherwise the refresher's
// first frame wakes it.
func (l *live) join() *stream {
	s := &stream{wake: make(chan struct{}, 1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.streams[s] = struct{}{}
	if l.cancel == nil {
		// Derived from the handler's, so that none runs after Close.
		ctx, cancel := context.WithCancel(l.h.ctx)
		l.cancel, l.done = cancel, make(chan struct{})
		l.frame = nil
		go l.run(ctx, l.done)
	} else if l.frame != nil {
		s.wake <- struct{}{}
	}
	return s
}

// leave removes a stream, stopping the refresher after the last one.
func (l *live) leave(s *stream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.streams, s)
	if len(l.streams) == 0 && l.cancel != nil {
		l.cancel()
		l.cancel = nil
	}
}

func (l *live) close() {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel = nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// next returns the newest frame if it is newer than what s has seen.
func (l *live) next(s *stream) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frame == nil || s.seq == l.seq {
		return nil, false
	}
	s.seq = l.seq
	return l.frame, true
}

// publish makes frame the newest and wakes every stream.
func (l *live) publish(frame []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if bytes.Equal(frame, l.frame) {
		return
	}
	l.frame = frame
	l.seq++
	for s := range l.streams {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run reads and renders the overview at start, after each change, and
// every ReplicaRefresh (replicas become ready without a ledger write).
func (l *live) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	var sub Subscription
	var changed <-chan struct{}
	if l.h.o.Subscribe != nil {
		sub = l.h.o.Subscribe()
		defer sub.Cancel()
		changed = sub.C()
	}
	tick := time.NewTicker(l.h.o.ReplicaRefresh)
	defer tick.Stop()
	// last is what each app showed; a change re-reads only the apps it
	// names, the ticker every app.
	var last map[string]appOverview
	var apps []string
	for {
		last = l.refresh(ctx, last, apps)
		select {
		case <-ctx.Done():
			return
		case <-changed:
			apps = sub.Take()
			if apps == nil {
				apps = []string{}
			}
		case <-tick.C:
			apps = nil
		}
	}
}

// refresh reads the apps that changed (nil: all), renders the overview
// and hands it to the streams. It returns what each app showed.
func (l *live) refresh(ctx context.Context, last map[string]appOverview, changed []string) map[string]appOverview {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	data := l.h.rereadOverview(rctx, last, changed)
	if ctx.Err() != nil {
		return last
	}
	body, err := l.h.renderOverview(data)
	if err != nil {
		l.h.log.Error("render the overview", "err", err)
		return last
	}
	l.publish(sseEvent("overview", body))
	next := make(map[string]appOverview, len(data.Apps))
	for _, a := range data.Apps {
		next[a.Name] = a
	}
	return next
}

// sseEvent encodes one Server-Sent Event.
func sseEvent(name string, data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(data) + 64)
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteByte('\n')
	for line := range bytes.Lines(data) {
		b.WriteString("data: ")
		b.Write(bytes.TrimRight(line, "\r\n"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// events streams the overview to one browser.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.requestContext(r)
	defer cancel()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	rc.Flush()
	s := h.live.join()
	defer h.live.leave(s)
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
		case <-s.wake:
			frame, ok := h.live.next(s)
			if !ok {
				continue
			}
			if _, err := w.Write(frame); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
