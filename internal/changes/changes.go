// Package changes tells whoever watches (the dashboard's live streams) that
// something of an app changed: a deployment row or one of its steps, a
// build row. Publishers never wait for subscribers: each subscription holds
// one pending signal and the set of apps changed since it last looked, so
// any number of changes between two looks cost one wake-up.
package changes

import (
	"slices"
	"sync"
)

// Hub tells subscribers that something of an app changed (a deployment row
// or step, a build row). Publish never blocks; signals are coalesced. The
// zero value is not usable: make one with NewHub.
type Hub struct {
	mu   sync.Mutex
	subs map[*Sub]struct{}
}

// NewHub returns a hub with no subscribers.
func NewHub() *Hub { return &Hub{subs: map[*Sub]struct{}{}} }

// Publish records that app changed, for every subscription, and wakes
// those not already woken. It never waits for a subscriber.
func (h *Hub) Publish(app string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.add(app)
	}
}

// Subscribe returns a subscription; cancel ends it.
func (h *Hub) Subscribe() *Sub {
	s := &Sub{hub: h, c: make(chan struct{}, 1), apps: map[string]struct{}{}}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Subscribers is how many subscriptions are open.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Sub is one subscription to a Hub.
type Sub struct {
	hub  *Hub
	c    chan struct{}
	mu   sync.Mutex
	apps map[string]struct{}
}

func (s *Sub) add(app string) {
	s.mu.Lock()
	s.apps[app] = struct{}{}
	s.mu.Unlock()
	select {
	case s.c <- struct{}{}:
	default: // a signal is pending already
	}
}

// C receives (cap 1, coalesced) after one or more Publish. It is never
// closed: select on it together with the caller's context.
func (s *Sub) C() <-chan struct{} { return s.c }

// Take returns the apps changed since the last Take, sorted and
// deduplicated, and forgets them.
func (s *Sub) Take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.apps) == 0 {
		return nil
	}
	out := make([]string, 0, len(s.apps))
	for a := range s.apps {
		out = append(out, a)
	}
	clear(s.apps)
	slices.Sort(out)
	return out
}

// Cancel ends the subscription: it gets no more signals. Calling it again
// does nothing.
func (s *Sub) Cancel() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
}
