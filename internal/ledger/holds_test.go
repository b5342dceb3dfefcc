package ledger

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestHolds checks that locks and pins are kept per app, replaced, removed
// and read back after the ledger is opened again.
func TestHolds(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	st := openTest(t, path)
	at := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	st.SetClock(func() time.Time { return at })
	shop, blog := st.Deployments().ForApp("shop").Holds(), st.Deployments().ForApp("blog").Holds()

	if err := shop.PutLock(ctx, &Lock{Env: "prod", Reason: "black friday", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := shop.PutLock(ctx, &Lock{Env: "dev", Reason: "first", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := shop.PutLock(ctx, &Lock{Env: "dev", Reason: "second", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := shop.DeleteLock(ctx, "qa", "carol"); err != nil {
		t.Fatalf("unlock of an environment not locked: %v", err)
	}
	c1, c2 := strings.Repeat("1", 40), strings.Repeat("2", 40)
	pin := Pin{Env: "dev", Commit: c1, From: c2, Head: c2, DeploymentID: 7, By: "rollback command"}
	if err := shop.PutPin(ctx, &pin); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openTest(t, path)
	st.SetClock(func() time.Time { return at })
	shop, blog = st.Deployments().ForApp("shop").Holds(), st.Deployments().ForApp("blog").Holds()
	locks, err := shop.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Lock{{Env: "dev", Reason: "second", By: "bob", Since: at}, {Env: "prod", Reason: "black friday", By: "alice", Since: at}}
	if diff := cmp.Diff(want, locks); diff != "" {
		t.Errorf("shop's locks (-want +got):\n%s", diff)
	}
	pins, err := shop.Pins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pin.Since = at
	if diff := cmp.Diff([]Pin{pin}, pins); diff != "" {
		t.Errorf("shop's pins (-want +got):\n%s", diff)
	}
	if l, _ := blog.Locks(ctx); len(l) != 0 {
		t.Errorf("blog sees shop's locks: %+v", l)
	}
	if err := shop.DeletePin(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if err := shop.DeleteLock(ctx, "prod", "carol"); err != nil {
		t.Fatal(err)
	}
	hist, err := shop.LockHistory(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantHist := []Lock{
		{Env: "dev", Reason: "second", By: "bob", Since: at},
		{Env: "dev", Reason: "first", By: "bob", Since: at, UnlockedBy: "replaced by bob", Until: at},
		{Env: "prod", Reason: "black friday", By: "alice", Since: at, UnlockedBy: "carol", Until: at},
	}
	if diff := cmp.Diff(wantHist, hist); diff != "" {
		t.Errorf("shop's lock history (-want +got):\n%s", diff)
	}
	if p, _ := shop.Pins(ctx); len(p) != 0 {
		t.Errorf("pins after unpin: %+v", p)
	}
	if l, _ := shop.Locks(ctx); len(l) != 1 || l[0].Env != "dev" {
		t.Errorf("locks after unlocking prod: %+v", l)
	}
}
