package changes

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// signalled reports whether s has a signal pending, taking it.
func signalled(s *Sub) bool {
	select {
	case <-s.C():
		return true
	default:
		return false
	}
}

func TestPublishCoalesces(t *testing.T) {
	h := NewHub()
	s := h.Subscribe()
	defer s.Cancel()
	if signalled(s) {
		t.Fatal("a new subscription is signalled before any Publish")
	}
	for _, app := range []string{"web", "api", "web", "api", "web"} {
		h.Publish(app)
	}
	if !signalled(s) {
		t.Fatal("no signal after Publish")
	}
	if signalled(s) {
		t.Error("five Publish calls gave more than one signal")
	}
	if diff := cmp.Diff([]string{"api", "web"}, s.Take()); diff != "" {
		t.Errorf("Take (-want +got):\n%s", diff)
	}
	if got := s.Take(); got != nil {
		t.Errorf("second Take = %q, want nothing", got)
	}
	h.Publish("db")
	if !signalled(s) {
		t.Fatal("no signal after a Publish that followed a Take")
	}
	if diff := cmp.Diff([]string{"db"}, s.Take()); diff != "" {
		t.Errorf("Take after the second Publish (-want +got):\n%s", diff)
	}
}

func TestEverySubscriberIsTold(t *testing.T) {
	h := NewHub()
	a, b := h.Subscribe(), h.Subscribe()
	defer a.Cancel()
	defer b.Cancel()
	h.Publish("web")
	if !signalled(a) || !signalled(b) {
		t.Fatal("a subscriber was not signalled")
	}
	if diff := cmp.Diff([]string{"web"}, a.Take()); diff != "" {
		t.Errorf("a.Take (-want +got):\n%s", diff)
	}
	h.Publish("api")
	// b never took: it has both apps.
	if diff := cmp.Diff([]string{"api", "web"}, b.Take()); diff != "" {
		t.Errorf("b.Take (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"api"}, a.Take()); diff != "" {
		t.Errorf("a.Take after the second Publish (-want +got):\n%s", diff)
	}
}

func TestCancel(t *testing.T) {
	h := NewHub()
	s := h.Subscribe()
	kept := h.Subscribe()
	defer kept.Cancel()
	if got := h.Subscribers(); got != 2 {
		t.Fatalf("Subscribers = %d, want 2", got)
	}
	s.Cancel()
	s.Cancel() // a second Cancel does nothing
	if got := h.Subscribers(); got != 1 {
		t.Fatalf("Subscribers after Cancel = %d, want 1", got)
	}
	h.Publish("web")
	if signalled(s) || s.Take() != nil {
		t.Error("a cancelled subscription was told of a change")
	}
	if !signalled(kept) {
		t.Error("cancelling one subscription silenced another")
	}
}

// TestPublishNeverBlocks publishes far more than any buffer holds to
// subscribers that never read: every Publish returns.
func TestPublishNeverBlocks(t *testing.T) {
	h := NewHub()
	for range 100 {
		defer h.Subscribe().Cancel()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10000 {
			h.Publish(fmt.Sprintf("app-%d", i%7))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on subscribers that do not read")
	}
}

// TestConcurrentUse publishes, takes and cancels at once (run it with
// -race): every app published before a subscriber's last Take is seen.
func TestConcurrentUse(t *testing.T) {
	h := NewHub()
	s := h.Subscribe()
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range 500 {
				h.Publish(fmt.Sprintf("app-%d", (p*500+i)%10))
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 100 {
				h.Subscribe().Cancel()
			}
		})
	}
	seen := map[string]bool{}
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-s.C():
				for _, a := range s.Take() {
					seen[a] = true
				}
			case <-stop:
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	for _, a := range s.Take() {
		seen[a] = true
	}
	if len(seen) != 10 {
		t.Errorf("saw %d apps, want 10: %v", len(seen), seen)
	}
	s.Cancel()
	if got := h.Subscribers(); got != 0 {
		t.Errorf("Subscribers = %d after every Cancel, want 0", got)
	}
}
