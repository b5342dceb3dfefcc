package pipeline

import "sync"

// queue is the next commit an automatic environment deploys: the newest
// commit wins over one that waits.
type queue struct {
	// decide is held by whoever decides whether a commit goes into the
	// queue (considerCommit): the poll loop and a push webhook's loop take
	// turns, so the same commit is not queued twice. Only they wait on it.
	decide sync.Mutex

	mu       sync.Mutex
	next     string
	inFlight string
	wake     chan struct{}
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

// push makes commit the next one; it returns the commit it superseded, if
// any.
func (q *queue) push(commit string) (superseded string) {
	q.mu.Lock()
	if q.next != "" && q.next != commit {
		superseded = q.next
	}
	q.next = commit
	q.mu.Unlock()
	q.signal()
	return superseded
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the next commit and marks it in flight; "" when none waits.
func (q *queue) take() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.next
	q.next, q.inFlight = "", c
	return c
}

// putBack returns commit to the queue unless a newer one waits.
func (q *queue) putBack(commit string) {
	q.mu.Lock()
	if q.next == "" {
		q.next = commit
	}
	q.inFlight = ""
	q.mu.Unlock()
}

// finish marks the commit in flight done.
func (q *queue) finish() {
	q.mu.Lock()
	q.inFlight = ""
	q.mu.Unlock()
}

// pending reports whether commit waits or is in flight.
func (q *queue) pending(commit string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return commit != "" && (q.next == commit || q.inFlight == commit)
}

// waiting returns the commit that waits to be taken, or "".
func (q *queue) waiting() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.next
}
