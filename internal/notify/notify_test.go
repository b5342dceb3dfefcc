package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
)

const testSecret = "s3cret"

// receiver is a destination on 127.0.0.1 that checks signatures and
// records every request; answer decides each answer.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(r *http.Request, n int) int // n: requests so far, from 1
}

type delivery struct {
	ID, Event, Attempt string
	Body               []byte
}

func newReceiver(t *testing.T, answer func(r *http.Request, n int) int) *receiver {
	rc := &receiver{t: t, answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if sig := r.Header.Get(HeaderSignature); !Verify([]byte(testSecret), body, sig) {
		rc.t.Errorf("delivery %s: signature %q does not match the body", r.Header.Get(HeaderDelivery), sig)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, delivery{r.Header.Get(HeaderDelivery), r.Header.Get(HeaderEvent), r.Header.Get(HeaderAttempt), body})
	n := len(rc.got)
	rc.mu.Unlock()
	code := http.StatusOK
	if rc.answer != nil {
		code = rc.answer(r, n)
	}
	w.WriteHeader(code)
	if code != http.StatusOK {
		io.WriteString(w, "receiver says no\n")
	}
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func openStore(t testing.TB, path string) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dests(url string, extra ...Destination) Destinations {
	return func(app string) []Destination {
		return append([]Destination{{Name: "hook", URL: url, SecretEnv: "HOOK_SECRET"}}, extra...)
	}
}

func secret(name string) string {
	if name == "HOOK_SECRET" {
		return testSecret
	}
	return ""
}

func fastOptions() Options {
	return Options{FirstBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, AttemptTimeout: 2 * time.Second, Secret: secret}
}

// runDeliverer runs a Deliverer until the test ends.
func runDeliverer(t *testing.T, store *ledger.Store, wake <-chan struct{}, opt Options) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewDeliverer(store, wake, opt).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// waitState waits until every row of the outbox is in state.
func waitState(t *testing.T, store *ledger.Store, want int, state string) []ledger.Notification {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ns, err := store.Notifications(context.Background(), ledger.NotificationFilter{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, n := range ns {
			if n.State == state {
				k++
			}
		}
		if k == want {
			return ns
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d notifications %s after 20s: %+v", k, want, state, ns)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func event(kind string) Event {
	return Event{Kind: kind, App: "web", Env: "prod", Commit: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", Release: "RC20261202_1150"}
}

func TestDeliverSigned(t *testing.T) {
	rc := newReceiver(t, nil)
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	out := NewOutbox(store, dests(rc.srv.URL))
	runDeliverer(t, store, out.Wakeups(), fastOptions())
	if err := out.Notify(context.Background(), event(Released)); err != nil {
		t.Fatal(err)
	}
	ns := waitState(t, store, 1, ledger.NotificationDelivered)
	got := rc.deliveries()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	var body Body
	if err := json.Unmarshal(got[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	want := Body{ID: ns[0].DeliveryID, Event: event(Released), Summary: "web: released RC20261202_1150 (1a2b3c4) to prod"}
	want.Time = body.Time
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if got[0].ID != ns[0].DeliveryID || got[0].Event != Released || got[0].Attempt != "1" {
		t.Errorf("headers: delivery %q event %q attempt %q, want %q released 1", got[0].ID, got[0].Event, got[0].Attempt, ns[0].DeliveryID)
	}
	if ns[0].Attempts != 1 || ns[0].DeliveredAt.IsZero() {
		t.Errorf("row = %+v, want delivered at the first attempt", ns[0])
	}
}

func TestNotifyFilters(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	out := NewOutbox(store, func(app string) []Destination {
		return []Destination{
			{Name: "all", URL: "http://127.0.0.1:1/"},
			{Name: "chat", URL: "http://127.0.0.1:1/", Format: FormatSlack, Events: []string{Released, AutoRollback}},
		}
	})
	ctx := context.Background()
	for _, k := range []string{Deployed, Released} {
		if err := out.Notify(ctx, event(k)); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := store.Notifications(ctx, ledger.NotificationFilter{App: "web", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range ns {
		got = append(got, n.Event+" "+n.Destination+" "+n.Format)
	}
	if diff := cmp.Diff([]string{"released chat slack", "released all json", "deployed all json"}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	var slack struct {
		Text   string           `json:"text"`
		Blocks []map[string]any `json:"blocks"`
	}
	if err := json.Unmarshal(ns[0].Body, &slack); err != nil {
		t.Fatal(err)
	}
	if slack.Text != "web: released RC20261202_1150 (1a2b3c4) to prod" || len(slack.Blocks) != 2 {
		t.Errorf("slack body = %s", ns[0].Body)
	}
}

// TestRetriesKeepDeliveryID: a receiver that answers 500, then times out,
// then answers slowly (within the timeout) gets the same delivery id every
// time, and the row ends delivered after four attempts.
func TestRetriesKeepDeliveryID(t *testing.T) {
	rc := newReceiver(t, func(r *http.Request, n int) int {
		switch n {
		case 1, 2:
			return http.StatusInternalServerError
		case 3:
			<-r.Context().Done() // never answers: the attempt times out
			return http.StatusOK
		}
		time.Sleep(300 * time.Millisecond) // slow, but within the timeout
		return http.StatusNoContent
	})
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	out := NewOutbox(store, dests(rc.srv.URL))
	opt := fastOptions()
	opt.AttemptTimeout = time.Second
	runDeliverer(t, store, out.Wakeups(), opt)
	if err := out.Notify(context.Background(), event(AutoRollback)); err != nil {
		t.Fatal(err)
	}
	ns := waitState(t, store, 1, ledger.NotificationDelivered)
	var ids, attempts []string
	for _, d := range rc.deliveries() {
		ids, attempts = append(ids, d.ID), append(attempts, d.Attempt)
	}
	id := ns[0].DeliveryID
	if diff := cmp.Diff([]string{id, id, id, id}, ids); diff != "" {
		t.Errorf("delivery ids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1", "2", "3", "4"}, attempts); diff != "" {
		t.Errorf("attempt headers (-want +got):\n%s", diff)
	}
	if ns[0].Attempts != 4 || ns[0].LastError != "" {
		t.Errorf("row: attempts %d, last error %q; want 4 and none", ns[0].Attempts, ns[0].LastError)
	}
}

// TestAttemptErrors checks what a failed attempt records: the status and
// the start of the answer, or the timeout; never the URL's path or query.
func TestAttemptErrors(t *testing.T) {
	rc := newReceiver(t, func(r *http.Request, n int) int {
		if n == 2 {
			<-r.Context().Done()
		}
		return http.StatusInternalServerError
	})
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	clock := newFakeClock()
	store.SetClock(clock.Now)
	out := NewOutbox(store, dests(rc.srv.URL+"/services/T0/B0/token?key=x"))
	opt := fastOptions()
	opt.AttemptTimeout, opt.Now = 300*time.Millisecond, clock.Now
	dl := NewDeliverer(store, nil, opt)
	ctx := context.Background()
	if err := out.Notify(ctx, event(Refused)); err != nil {
		t.Fatal(err)
	}
	var errs []string
	for range 2 {
		if err := dl.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		ns, _ := store.Notifications(ctx, ledger.NotificationFilter{Limit: 1})
		errs = append(errs, ns[0].LastError)
		clock.Advance(time.Minute)
	}
	host := strings.TrimPrefix(rc.srv.URL, "http://")
	want := []string{
		"post to http://" + host + "/…: 500 Internal Server Error: receiver says no",
		"post to http://" + host + "/…: no answer within 300ms",
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("last errors (-want +got):\n%s", diff)
	}
}

func TestMissingSecretWaits(t *testing.T) {
	rc := newReceiver(t, nil)
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	out := NewOutbox(store, dests(rc.srv.URL))
	opt := fastOptions()
	opt.Secret = func(string) string { return "" }
	dl := NewDeliverer(store, nil, opt)
	ctx := context.Background()
	if err := out.Notify(ctx, event(Locked)); err != nil {
		t.Fatal(err)
	}
	if err := dl.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	ns, _ := store.Notifications(ctx, ledger.NotificationFilter{Limit: 1})
	if len(rc.deliveries()) != 0 || ns[0].State != ledger.NotificationPending || !strings.Contains(ns[0].LastError, "HOOK_SECRET") {
		t.Errorf("with HOOK_SECRET empty: %d requests, row %+v; want none sent, pending, naming HOOK_SECRET", len(rc.deliveries()), ns[0])
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for a := 1; a <= 12; a++ {
		got = append(got, Backoff(a, time.Second, 10*time.Minute))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600}
	for i := range want {
		want[i] *= time.Second
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Backoff (-want +got):\n%s", diff)
	}
}

func TestSummary(t *testing.T) {
	c := "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{Event{Kind: BuildFailed, App: "web", Env: "dev", Commit: c, Reason: "tests failed"}, "web: the build of 1a2b3c4 failed: tests failed"},
		{Event{Kind: Deployed, App: "web", Env: "dev", Commit: c}, "web: dev runs 1a2b3c4"},
		{Event{Kind: Verified, App: "web", Env: "staging", Commit: c}, "web: 1a2b3c4 is verified on staging"},
		{Event{Kind: Refused, App: "web", Env: "prod", Commit: c, Reason: "not a fast-forward"}, "web: the release of 1a2b3c4 to prod was refused: not a fast-forward"},
		{Event{Kind: RolledBack, App: "web", Env: "prod", Commit: c, Release: "RC20261201_0900"}, "web: prod rolled back to RC20261201_0900 (1a2b3c4)"},
		{Event{Kind: Locked, App: "web", Env: "prod", Actor: "alice", Reason: "incident 42"}, "web: prod locked by alice: incident 42"},
		{Event{Kind: BreakGlass, App: "web", Env: "prod", Actor: "bob"}, "web: break-glass on prod by bob"},
		{Event{Kind: Unlocked, App: "web", Env: "prod", Message: "prod is open again"}, "prod is open again"},
	} {
		if got := tc.e.Summary(); got != tc.want {
			t.Errorf("%s: Summary() = %q, want %q", tc.e.Kind, got, tc.want)
		}
	}
}

// TestSlowDestinationHoldsUpNoOther: while a destination that never
// answers holds its share of the attempts, another destination's events
// are delivered at once.
func TestSlowDestinationHoldsUpNoOther(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	slow := newReceiver(t, func(r *http.Request, n int) int {
		select {
		case <-r.Context().Done():
		case <-stuck:
		}
		return http.StatusOK
	})
	fast := newReceiver(t, nil)
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	out := NewOutbox(store, func(app string) []Destination {
		if app == "slow" {
			return []Destination{{Name: "hook", URL: slow.srv.URL, SecretEnv: "HOOK_SECRET"}}
		}
		return []Destination{{Name: "hook", URL: fast.srv.URL, SecretEnv: "HOOK_SECRET"}}
	})
	opt := fastOptions()
	opt.AttemptTimeout = time.Minute
	runDeliverer(t, store, out.Wakeups(), opt)
	ctx := context.Background()
	for range 10 {
		e := event(Deployed)
		e.App = "slow"
		if err := out.Notify(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if err := out.Notify(ctx, event(Deployed)); err != nil {
			t.Fatal(err)
		}
	}
	waitState(t, store, 10, ledger.NotificationDelivered)
	if n := len(slow.deliveries()); n != DefaultConcurrency/2 {
		t.Errorf("the slow destination has %d requests in flight, want %d (half the attempts)", n, DefaultConcurrency/2)
	}
}

// TestKeyWrittenOnce: an event announced again under the same Key (a
// flow finished again after a restart) is not written again; another Key
// is a new event.
func TestKeyWrittenOnce(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer store.Close()
	out := NewOutbox(store, dests("http://127.0.0.1:1/"))
	ctx := context.Background()
	for _, key := range []string{"web/deployment/7/released", "web/deployment/7/released", "web/deployment/8/released"} {
		e := event(Released)
		e.Key = key
		if err := out.Notify(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := store.Notifications(ctx, ledger.NotificationFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || ns[0].DeliveryID == ns[1].DeliveryID {
		t.Fatalf("rows %+v, want two with distinct ids", ns)
	}
	want, _ := deliveryID("web/deployment/7/released", "web/hook")
	if ns[1].DeliveryID != want {
		t.Errorf("delivery id of the first key = %s, want %s", ns[1].DeliveryID, want)
	}
}
