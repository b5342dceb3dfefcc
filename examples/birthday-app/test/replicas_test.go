//go:build integration

package test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"example.com/birthday-app/internal/dbtest"
)

// TestReplicas starts several replicas at the same moment against one fresh
// database (one shared file on SQLite): each applies the migrations or waits
// for another to, they are recorded once, and concurrent writes through
// every replica are all readable from every other.
func TestReplicas(t *testing.T) {
	const replicas = 4
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Fresh(t)
			apps := make([]*app, replicas)
			for i := range apps {
				apps[i] = launch(t, binary, db)
			}
			for _, a := range apps {
				a.waitListening()
				if r := call(t, "GET", a.URL+"/readyz", ""); r.Code != 200 {
					t.Fatalf("replica not ready: %+v; logs:\n%s", r, a.Logs())
				}
			}

			rows, err := dbtest.Open(t, db).Query("SELECT version FROM schema_migrations ORDER BY version")
			if err != nil {
				t.Fatalf("read schema_migrations: %v", err)
			}
			var versions []int
			for rows.Next() {
				var v int
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				versions = append(versions, v)
			}
			rows.Close()
			if diff := cmp.Diff([]int{1}, versions); diff != "" {
				t.Errorf("schema_migrations after %d concurrent starts (-want +got):\n%s", replicas, diff)
			}

			// Each replica writes its own users and, all at once, the same one.
			const perReplica = 25
			var wg sync.WaitGroup
			for i, a := range apps {
				wg.Go(func() {
					for j := range perReplica {
						name := fmt.Sprintf("User%c%c", 'A'+i, 'A'+j)
						if r := call(t, "PUT", a.URL+"/hello/"+name, fmt.Sprintf(`{"dateOfBirth":"1980-01-%02d"}`, j+1)); r.Code != 204 {
							t.Errorf("PUT %s via replica %d: %+v", name, i, r)
						}
						if r := call(t, "PUT", a.URL+"/hello/Shared", `{"dateOfBirth":"1999-09-09"}`); r.Code != 204 {
							t.Errorf("PUT Shared via replica %d: %+v", i, r)
						}
					}
				})
			}
			wg.Wait()
			for i := range apps {
				reader := apps[(i+1)%replicas]
				for j := range perReplica {
					name := fmt.Sprintf("User%c%c", 'A'+i, 'A'+j)
					if r := call(t, "GET", reader.URL+"/hello/"+name, ""); r.Code != 200 {
						t.Errorf("GET %s written by replica %d, via another: %+v", name, i, r)
					}
				}
			}
			var count int
			if err := dbtest.Open(t, db).QueryRow("SELECT COUNT(*) FROM users").Scan(&count); err != nil {
				t.Fatal(err)
			}
			if want := replicas*perReplica + 1; count != want {
				t.Errorf("users table has %d rows, want %d", count, want)
			}
			for _, a := range apps {
				if err := a.stop(); err != nil {
					t.Errorf("replica exited with %v; logs:\n%s", err, a.Logs())
				}
			}
		})
	}
}
