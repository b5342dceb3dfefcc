package notify

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

// TestMain runs the child process of TestSIGKILLMidDelivery when
// SLIPWAY_NOTIFY_CHILD names a ledger: it delivers that ledger's outbox
// until it is killed.
func TestMain(m *testing.M) {
	if path := os.Getenv("SLIPWAY_NOTIFY_CHILD"); path != "" {
		store, err := ledger.Open(context.Background(), path)
		if err != nil {
			os.Exit(3)
		}
		NewDeliverer(store, nil, Options{Secret: secret}).Run(context.Background())
		os.Exit(4)
	}
	os.Exit(m.Run())
}

// TestSIGKILLMidDelivery: a process delivering a notification is killed
// with SIGKILL while the receiver holds the request; the next process of
// the same ledger sends it again at once, with the same delivery id, and
// it ends delivered.
func TestSIGKILLMidDelivery(t *testing.T) {
	held := make(chan struct{})
	rc := newReceiver(t, func(r *http.Request, n int) int {
		if n == 1 {
			close(held)
			<-r.Context().Done() // the sender dies meanwhile
		}
		return http.StatusOK
	})
	path := filepath.Join(t.TempDir(), "ledger.db")
	store := openStore(t, path)
	if err := NewOutbox(store, dests(rc.srv.URL)).Notify(context.Background(), event(Released)); err != nil {
		t.Fatal(err)
	}
	store.Close()

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "SLIPWAY_NOTIFY_CHILD="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the child sent nothing within 20s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the child exited cleanly, want killed")
	}

	store = openStore(t, path)
	defer store.Close()
	began := time.Now()
	if err := NewDeliverer(store, nil, Options{Secret: secret}).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	ns, _ := store.Notifications(context.Background(), ledger.NotificationFilter{Limit: 10})
	got := rc.deliveries()
	if len(got) != 2 || got[0].ID != got[1].ID || got[1].ID != ns[0].DeliveryID || ns[0].State != ledger.NotificationDelivered {
		t.Fatalf("requests %+v, row %+v; want the same delivery sent twice, then delivered", got, ns[0])
	}
	if got[1].Attempt != "2" {
		t.Errorf("second request's %s = %q, want 2", HeaderAttempt, got[1].Attempt)
	}
	t.Logf("sent again %s after the restart", time.Since(began).Round(time.Millisecond))
}
