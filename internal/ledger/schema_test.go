package ledger

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSchemaRecorded(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	b, err := st.CreateBuild(ctx, Build{App: "a", Commit: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.GetBuild(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Schema.Known {
		t.Errorf("a new build's schema = %+v, want unknown", got.Schema)
	}
	b.State, b.Schema = BuildPushed, Schema{Known: true, Version: 3, Floor: 2, FloorBy: "0003_drop"}
	if err := st.UpdateBuild(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if got, err = st.GetBuild(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.Schema, got.Schema); diff != "" {
		t.Errorf("build's schema (-want +got):\n%s", diff)
	}
	zero := Schema{Known: true}
	l := st.Deployments().ForApp("a")
	for _, d := range []*Deployment{
		{Env: "prod", Kind: KindRelease, Commit: "c0", State: StateSucceeded},
		{Env: "prod", Kind: KindRelease, Commit: "c1", State: StateSucceeded, Schema: zero},
	} {
		if err := l.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		back, err := l.Get(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d.Schema, back.Schema); diff != "" {
			t.Errorf("deployment %s's schema (-want +got):\n%s", d.Commit, diff)
		}
		j, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(j), `"schema":`); has != d.Schema.Known {
			t.Errorf("JSON of %+v has a schema: %v, want %v: %s", d.Schema, has, d.Schema.Known, j)
		}
		var decoded Deployment
		if err := json.Unmarshal(j, &decoded); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d.Schema, decoded.Schema); diff != "" {
			t.Errorf("schema through JSON (-want +got):\n%s", diff)
		}
	}
	d := &Deployment{Env: "prod", Kind: KindRelease, Commit: "c2", State: StatePending}
	if err := l.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	d.Schema = Schema{Known: true, Version: 2}
	if err := l.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	back, err := l.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d.Schema, back.Schema); diff != "" {
		t.Errorf("updated schema (-want +got):\n%s", diff)
	}
}

func TestMigrated(t *testing.T) {
	ctx := t.Context()
	st := openTest(t, filepath.Join(t.TempDir(), FileName))
	l := st.Deployments().ForApp("a")
	other := st.Deployments().ForApp("b")
	check := func(env string, want Migrated) {
		t.Helper()
		got, err := l.Migrated(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Migrated(%s) (-want +got):\n%s", env, diff)
		}
	}
	add := func(l *Deployments, env, commit string, state DeploymentState, s Schema) int64 {
		t.Helper()
		d := &Deployment{Env: env, Kind: KindRelease, Commit: commit, State: state, Schema: s, ReleaseName: "RC_" + commit}
		if err := l.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		return d.ID
	}
	check("prod", Migrated{})
	add(l, "prod", "c0", StateSucceeded, Schema{}) // built before the labels
	check("prod", Migrated{})
	add(l, "prod", "c1", StateSucceeded, Schema{Known: true, Version: 1})
	check("prod", Migrated{Known: true, Version: 1})
	// Refused: nothing ran. Another app's and another environment's rows
	// do not count.
	add(l, "prod", "c9", StateRefused, Schema{Known: true, Version: 9, Floor: 9, FloorBy: "0009_x"})
	add(other, "prod", "c8", StateSucceeded, Schema{Known: true, Version: 8, Floor: 8, FloorBy: "0008_x"})
	add(l, "dev", "c7", StateSucceeded, Schema{Known: true, Version: 7, Floor: 7, FloorBy: "0007_x"})
	check("prod", Migrated{Known: true, Version: 1})
	// A failed release may have migrated before it failed.
	id := add(l, "prod", "c3", StateFailed, Schema{Known: true, Version: 3, Floor: 2, FloorBy: "0003_drop"})
	add(l, "prod", "c4", StateSucceeded, Schema{Known: true, Version: 4, Floor: 2, FloorBy: "0003_drop"})
	// A rollback to an older version leaves the database as it was.
	add(l, "prod", "c2", StateSucceeded, Schema{Known: true, Version: 2})
	want := Migrated{Known: true, Version: 4, Floor: 2, FloorBy: "0003_drop", FloorCommit: "c3", FloorDeployment: id, FloorRelease: "RC_c3"}
	check("prod", want)
	j, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var decoded Migrated
	if err := json.Unmarshal(j, &decoded); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, decoded); diff != "" {
		t.Errorf("migrated through JSON (-want +got):\n%s", diff)
	}
}
