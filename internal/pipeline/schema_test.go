package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/ledger"
)

func TestSchemaDecisions(t *testing.T) {
	sch := func(v, floor int, by string) ledger.Schema {
		return ledger.Schema{Known: true, Version: v, Floor: floor, FloorBy: by}
	}
	dep := func(id int64, name, commit string, s ledger.Schema) ledger.Deployment {
		return ledger.Deployment{ID: id, ReleaseName: name, Commit: commit, Schema: s}
	}
	v1 := dep(1, "RC1", "1111111aaaa", sch(1, 0, ""))
	v2 := dep(2, "RC2", "2222222bbbb", sch(2, 0, ""))
	v3 := dep(3, "", "3333333cccc", sch(3, 2, "0003_drop_date_of_birth"))
	old := dep(4, "RC0", "0000000dddd", ledger.Schema{})
	none := ledger.Migrated{}
	at := func(v, floor int) ledger.Migrated {
		m := ledger.Migrated{Known: true, Version: v, Floor: floor}
		if floor > 0 {
			m.FloorBy, m.FloorCommit, m.FloorDeployment, m.FloorRelease = "0003_drop_date_of_birth", v3.Commit, 7, "RC3"
		}
		return m
	}
	releases := []struct {
		name       string
		live, next ledger.Deployment
		m          ledger.Migrated
		want       string // a part of the problem; "" for none
	}{
		{"expand over v1", v1, v2, at(1, 0), ""},
		{"contract over v2", v2, v3, at(2, 0), ""},
		{"contract over v1", v1, v3, at(2, 0),
			"its migration 0003_drop_date_of_birth needs code built for schema 2 or later, and prod runs RC1 (1111111), built for schema 1: once the migration ran, an automatic rollback could not return to it; release first a commit built for schema 2 or later whose code no longer needs what 0003_drop_date_of_birth changes"},
		{"first release", ledger.Deployment{}, v3, none, ""},
		{"next declares nothing", v1, old, at(3, 2), ""},
		{"live declares nothing", old, v3, none, "prod runs RC0 (0000000), whose image declares no schema"},
		{"live declares nothing, next only expands", old, v2, none, ""},
		{"next below the floor", v3, v1, at(3, 2),
			"it is built for schema 1, but the database of prod has been migrated by 0003_drop_date_of_birth (from RC3 (3333333)), which needs code built for schema 2 or later"},
	}
	for _, tt := range releases {
		t.Run("release/"+tt.name, func(t *testing.T) {
			check(t, releaseSchemaProblem("prod", tt.live, tt.next, tt.m), tt.want)
		})
	}
	rollbacks := []struct {
		name   string
		target ledger.Deployment
		m      ledger.Migrated
		want   string
	}{
		{"nothing known", v1, none, ""},
		{"only expands ran", v1, at(2, 0), ""},
		{"to v2 after the contract", v2, at(3, 2), ""},
		{"to v1 after the contract", v1, at(3, 2),
			"RC1 (1111111) is built for schema 1, but the database of prod has been migrated by 0003_drop_date_of_birth (from RC3 (3333333)), which needs code built for schema 2 or later: it can no longer run there; roll back to a version built for schema 2 or later (slipway history --env prod shows each version's schema), or override with --force --reason"},
		{"to a version that declares nothing", old, at(3, 2), "the image of RC0 (0000000) declares no schema"},
		{"to a version that declares nothing, no floor", old, at(2, 0), ""},
	}
	for _, tt := range rollbacks {
		t.Run("rollback/"+tt.name, func(t *testing.T) {
			check(t, rollbackSchemaProblem("prod", tt.target, tt.m), tt.want)
		})
	}
	notes := []struct {
		name    string
		prev, d ledger.Deployment
		want    string
	}{
		{"expand", v1, v2, ""},
		{"contract over v2", v2, v3, ""},
		{"contract over v1", v1, v3, "deployed although its migration 0003_drop_date_of_birth needs code built for schema 2 or later: dev can no longer go back to RC1 (1111111) (dev is automatic)"},
		{"first deployment", ledger.Deployment{}, v3, ""},
	}
	for _, tt := range notes {
		t.Run("automatic/"+tt.name, func(t *testing.T) {
			check(t, strandedNote("dev", tt.prev, tt.d), tt.want)
		})
	}
}

func check(t *testing.T, got, want string) {
	t.Helper()
	switch {
	case want == "" && got != "":
		t.Errorf("problem %q, want none", got)
	case want != "" && !strings.Contains(got, want):
		t.Errorf("problem %q\nwant it to contain %q", got, want)
	}
}

func TestSchemaGuardsRollbacks(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c1 := h.repo.commit("c1")
	c2 := h.repo.commit("c2", c1)
	c3 := h.repo.commit("c3", c2)
	c4 := h.repo.commit("c4", c3)
	h.builder.schema = map[string]ledger.Schema{
		c1: {Known: true, Version: 1},
		c2: {Known: true, Version: 2},                                               // adds a nullable column
		c3: {Known: true, Version: 3, Floor: 2, FloorBy: "0003_drop_date_of_birth"}, // drops what c1 reads
		c4: {Known: true, Version: 4, Floor: 4, FloorBy: "0004_rename"},
	}
	h.start()
	for _, c := range []string{c1, c2, c3} {
		h.pushMaster(c)
	}
	rc1 := h.release(c1)
	h.clock.Add(time.Minute)
	if rc1.Schema != h.builder.schema[c1] {
		t.Errorf("release of c1 records schema %+v", rc1.Schema)
	}

	// The contract while c1 is live: refused, prod untouched.
	_, err := h.c.Release(ctx, ReleaseRequest{Commit: c3})
	var re *RefusedError
	if !errors.As(err, &re) || !errors.Is(err, ErrSchema) {
		t.Fatalf("release of c3 over c1: %v, want a schema refusal", err)
	}
	for _, want := range []string{"release of " + c3[:7] + " to prod refused: its migration 0003_drop_date_of_birth needs code built for schema 2 or later",
		rc1.ReleaseName + " (" + c1[:7] + "), built for schema 1", "release first a commit built for schema 2 or later"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q\nlacks %q", err, want)
		}
	}
	if cur, _ := h.store.Current(ctx, "prod"); cur.Commit != c1 {
		t.Errorf("prod runs %s after the refusal, want c1", shortHash(cur.Commit))
	}
	refused, err := h.store.LatestForCommit(ctx, "prod", ledger.KindRelease, c3)
	if err != nil || refused.State != ledger.StateRefused || refused.Schema != h.builder.schema[c3] {
		t.Errorf("refused row = %+v, %v", refused, err)
	}
	if _, err := h.c.Release(ctx, ReleaseRequest{Commit: c3, Force: true}); !errors.Is(err, ErrReasonRequired) {
		t.Errorf("forced release without a reason: %v", err)
	}

	// The expand: released, and c1 can still be rolled back to.
	h.release(c2)
	h.clock.Add(time.Minute)
	d, err := h.c.Rollback(ctx, RollbackRequest{})
	if err != nil {
		t.Fatalf("rollback to c1 after the expand: %v", err)
	}
	if d = h.waitFinal(d.ID); d.State != ledger.StateSucceeded || d.Commit != c1 {
		t.Fatalf("rollback to c1 = %s %s", d.State, shortHash(d.Commit))
	}
	rc2 := h.release(c2)
	h.clock.Add(time.Minute)
	// A scale keeps what the live version declares.
	if _, err := h.c.Scale(ctx, "prod", 3); err != nil {
		t.Fatal(err)
	}
	h.waitFor("scale", func() bool { return !h.c.busy("prod") })
	if cur, _ := h.store.Current(ctx, "prod"); cur.Kind != ledger.KindScale || cur.Schema != h.builder.schema[c2] {
		t.Errorf("after the scale, prod's current row is %s with schema %+v", cur.Kind, cur.Schema)
	}

	// With c2 live, the contract goes out.
	rc3 := h.release(c3)
	h.clock.Add(time.Minute)
	if rc3.State != ledger.StateSucceeded {
		t.Fatalf("release of c3 over c2: %s: %s", rc3.State, rc3.Reason)
	}
	m, err := h.store.Migrated(ctx, "prod")
	if err != nil || m.Version != 3 || m.Floor != 2 || m.FloorRelease != rc3.ReleaseName {
		t.Errorf("prod migrated = %+v, %v", m, err)
	}
	if es := h.envStatus("prod"); es.Schema == nil || *es.Schema != h.builder.schema[c3] || es.Migrated == nil || *es.Migrated != m {
		t.Errorf("status of prod: schema %v, migrated %v", es.Schema, es.Migrated)
	}
	// c1 can no longer run: its rollback is refused and recorded; c2 can.
	_, err = h.c.Rollback(ctx, RollbackRequest{Target: rc1.ReleaseName})
	if !errors.As(err, &re) || !errors.Is(err, ErrSchema) {
		t.Fatalf("rollback to c1 after the contract: %v, want a schema refusal", err)
	}
	want := "rollback of prod to " + rc1.ReleaseName + " (" + c1[:7] + ") refused: " + rc1.ReleaseName + " (" + c1[:7] +
		") is built for schema 1, but the database of prod has been migrated by 0003_drop_date_of_birth (from " + rc3.ReleaseName + " (" + c3[:7] + ")"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("refusal %q\nwant it to start %q", err, want)
	}
	if cur, _ := h.store.Current(ctx, "prod"); cur.Commit != c3 {
		t.Errorf("prod runs %s after the refused rollback, want c3", shortHash(cur.Commit))
	}
	if rows, _ := h.store.Latest(ctx, "prod", 1); len(rows) != 1 || rows[0].Kind != ledger.KindRollback || rows[0].State != ledger.StateRefused {
		t.Errorf("the refused rollback is not recorded: %+v", rows)
	}
	if _, err := h.c.Rollback(ctx, RollbackRequest{Target: rc1.ReleaseName, Force: true}); !errors.Is(err, ErrReasonRequired) {
		t.Errorf("forced rollback without a reason: %v", err)
	}
	d, err = h.c.Rollback(ctx, RollbackRequest{Target: rc2.ReleaseName})
	if err != nil {
		t.Fatalf("rollback to c2 after the contract: %v", err)
	}
	h.waitFinal(d.ID)
	// Forced past the check: recorded and announced.
	d, err = h.c.Rollback(ctx, RollbackRequest{Target: rc1.ReleaseName, Force: true, Reason: "c1 reads a view now"})
	if err != nil {
		t.Fatalf("forced rollback: %v", err)
	}
	d = h.waitFinal(d.ID)
	if d.State != ledger.StateSucceeded || !d.Forced || d.ForceReason != "c1 reads a view now" || !strings.Contains(d.Note, "schema check overridden") {
		t.Errorf("forced rollback = %+v", d)
	}
	if !h.noted(EventBreakGlass) {
		t.Errorf("no break-glass notification for the forced rollback: %q", h.notes.all())
	}

	// dev is automatic: c4 goes out, noting what dev can no longer go back
	// to; a rollback there is refused the same way.
	dev := h.pushMaster(c4)
	if dev.State != ledger.StateSucceeded || !strings.Contains(dev.Note, "dev can no longer go back to deployment") {
		t.Errorf("c4 on dev: %s, note %q", dev.State, dev.Note)
	}
	if _, err := h.c.Rollback(ctx, RollbackRequest{Env: "dev"}); !errors.Is(err, ErrSchema) {
		t.Errorf("rollback of dev below its floor: %v, want a schema refusal", err)
	}
}
