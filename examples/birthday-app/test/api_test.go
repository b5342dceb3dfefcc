//go:build integration

package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"example.com/birthday-app/internal/dbtest"
)

// TestAPI checks every behaviour of the API against the real binary, once
// per storage backend.
func TestAPI(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			a := start(t, b.Fresh(t))
			requests := checkGreetings(t, a.URL, time.UTC)
			requests += checkErrors(t, a.URL)
			requests += checkOps(t, a.URL)
			checkRequestLogs(t, a, requests)
			if err := a.stop(); err != nil {
				t.Errorf("birthday-app exited with %v after SIGTERM; logs:\n%s", err, a.Logs())
			}
		})
	}
}

// checkGreetings saves users whose birthdays are 0, 1, 100 and 364 days away
// in loc and reads the greetings back. It returns how many requests it made.
func checkGreetings(t *testing.T, base string, loc *time.Location) int {
	t.Helper()
	requests := 0
	for attempt := 0; ; attempt++ {
		today := todayIn(loc)
		want := map[string]string{}
		got := map[string]string{}
		for name, n := range map[string]int{"Today": 0, "Tomorrow": 1, "Later": 100, "Nearly": 364} {
			if r := call(t, "PUT", base+"/hello/"+name, `{"dateOfBirth":"`+bornDaysAhead(today, n)+`"}`); r.Code != 204 || r.Body != "" {
				t.Fatalf("PUT /hello/%s = %+v, want 204 and no body", name, r)
			}
			got[name] = call(t, "GET", base+"/hello/"+name, "").Body
			requests += 2
			switch n {
			case 0:
				want[name] = `{"message":"Hello, ` + name + `! Happy birthday!"}`
			case 1:
				want[name] = `{"message":"Hello, ` + name + `! Your birthday is in 1 day"}`
			default:
				want[name] = fmt.Sprintf(`{"message":"Hello, %s! Your birthday is in %d days"}`, name, n)
			}
		}
		if !todayIn(loc).Equal(today) && attempt == 0 {
			continue // the date changed while we asked; ask again
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("greetings on %s (%s) mismatch (-want +got):\n%s", today.Format(time.DateOnly), loc, diff)
		}
		return requests
	}
}

func checkErrors(t *testing.T, base string) int {
	t.Helper()
	long := strings.Repeat("L", 256)
	steps := []struct {
		method, path, body string
		want               result
	}{
		{"PUT", "/hello/Ann", `{"dateOfBirth":"1990-01-31"}`, result{Code: 204}},
		{"PUT", "/hello/Ann", `{"dateOfBirth":"2000-02-29","unknown":{"x":[1]}}`, result{Code: 204}},
		{"GET", "/hello/ann", "", result{Code: 404, Body: `{"error":"user ann not found"}`}},
		{"GET", "/hello/Nobody", "", result{Code: 404, Body: `{"error":"user Nobody not found"}`}},
		{"GET", "/hello/a1", "", result{Code: 404, Body: `{"error":"user a1 not found"}`}},
		{"HEAD", "/hello/Ann", "", result{Code: 200}},
		{"PUT", "/hello/" + long, `{"dateOfBirth":"1970-01-01"}`, result{Code: 204}},
		{"PUT", "/hello/" + long + "L", `{"dateOfBirth":"1970-01-01"}`, result{Code: 400, Body: `{"error":"username must be at most 256 letters long"}`}},
		{"PUT", "/hello/J%C3%B6rg", `{"dateOfBirth":"1970-01-01"}`, result{Code: 400, Body: `{"error":"username must contain only letters (A-Z, a-z)"}`}},
		{"PUT", "/hello/Ann", `{"dateOfBirth":"2999-01-01"}`, result{Code: 400}},
		{"PUT", "/hello/Ann", `{"dateOfBirth":"2001-02-29"}`, result{Code: 400, Body: `{"error":"dateOfBirth must be a real calendar date, 2001-02-29 does not exist"}`}},
		{"PUT", "/hello/Ann", `{"dateOfBirth":"31/01/1990"}`, result{Code: 400, Body: `{"error":"dateOfBirth must be a date in the form YYYY-MM-DD"}`}},
		{"PUT", "/hello/Ann", `{"dateOfBirth":19900131}`, result{Code: 400, Body: `{"error":"dateOfBirth must be a string in the form YYYY-MM-DD"}`}},
		{"PUT", "/hello/Ann", `{"name":"Ann"}`, result{Code: 400, Body: `{"error":"dateOfBirth is required"}`}},
		{"PUT", "/hello/Ann", `[]`, result{Code: 400, Body: `{"error":"body must be a JSON object such as {\"dateOfBirth\":\"2000-01-31\"}"}`}},
		{"PUT", "/hello/Ann", `{"dateOfBirth":"1990-01-31","pad":"` + strings.Repeat(" ", 1000) + `"}`, result{Code: 413, Body: `{"error":"body must be at most 1024 bytes"}`}},
		{"POST", "/hello/Ann", `{"dateOfBirth":"1990-01-31"}`, result{Code: 405, Allow: "GET, HEAD, PUT", Body: `{"error":"method POST is not allowed on /hello/{username}; use GET, HEAD, PUT"}`}},
		{"DELETE", "/readyz", "", result{Code: 405, Allow: "GET, HEAD", Body: `{"error":"method DELETE is not allowed on /readyz; use GET, HEAD"}`}},
		{"GET", "/hello", "", result{Code: 404, Body: `{"error":"no such path: /hello"}`}},
		{"GET", "/nowhere", "", result{Code: 404, Body: `{"error":"no such path: /nowhere"}`}},
	}
	for i, s := range steps {
		got := call(t, s.method, base+s.path, s.body)
		if s.want.Body == "" && s.want.Code == 400 {
			got.Body = "" // checked below
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("step %d: %s %.60s mismatch (-want +got):\n%s", i, s.method, s.path, diff)
		}
	}
	future := call(t, "PUT", base+"/hello/Ann", `{"dateOfBirth":"2999-01-01"}`)
	if !strings.HasPrefix(future.Body, `{"error":"dateOfBirth must be a date before today`) {
		t.Errorf("PUT with a future date: body %s, want an error saying dateOfBirth must be before today", future.Body)
	}
	// The last valid PUT (Feb 29) is what GET finds.
	if r := call(t, "GET", base+"/hello/Ann", ""); r.Code != 200 || !strings.HasPrefix(r.Body, `{"message":"Hello, Ann! `) {
		t.Errorf("GET /hello/Ann = %+v, want 200 and a greeting", r)
	}
	if r := call(t, "GET", base+"/hello/"+long, ""); r.Code != 200 {
		t.Errorf("GET of a 256-letter user = %+v, want 200", r)
	}
	return len(steps) + 3
}

func checkOps(t *testing.T, base string) int {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz", "/statusz"} {
		if r := call(t, "GET", base+path, ""); r.Code != 200 {
			t.Errorf("GET %s = %+v, want 200", path, r)
		}
	}
	var v struct {
		Commit    string `json:"commit"`
		Modified  bool   `json:"modified"`
		GoVersion string `json:"goVersion"`
	}
	r := call(t, "GET", base+"/version", "")
	if err := json.Unmarshal([]byte(r.Body), &v); err != nil {
		t.Fatalf("/version: %v: %s", err, r.Body)
	}
	if v.Commit != commit || v.Modified || !strings.HasPrefix(v.GoVersion, "go") {
		t.Errorf("/version = %s, want commit %s, not modified, and a Go version", r.Body, commit)
	}
	m := call(t, "GET", base+"/metrics", "")
	for _, want := range []string{
		`birthday_http_requests_total{code="204",method="PUT",route="/hello/{username}"}`,
		`birthday_http_requests_total{code="404",method="GET",route="unmatched"} 2`,
		`birthday_http_requests_total{code="405",method="other",route="/hello/{username}"} 1`,
		`birthday_http_request_duration_seconds_bucket{route="/hello/{username}",le="0.005"}`,
		`birthday_db_errors_total{op="put"} 0`,
		`process_resident_memory_bytes`,
		`go_goroutines`,
	} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	return 5
}

// checkRequestLogs checks that the process wrote one JSON line per request.
func checkRequestLogs(t *testing.T, a *app, atLeast int) {
	t.Helper()
	var lines []map[string]any
	for range 100 {
		lines = lines[:0]
		for _, l := range strings.Split(a.Logs(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
				lines = append(lines, m)
			}
		}
		if len(lines) >= atLeast {
			break
		}
		time.Sleep(50 * time.Millisecond) // the last lines may still be in the pipe
	}
	if len(lines) < atLeast {
		t.Fatalf("%d request log lines for %d requests; logs:\n%s", len(lines), atLeast, a.Logs())
	}
	found := false
	for _, l := range lines {
		if _, ok := l["durationMs"].(float64); !ok || l["method"] == nil || l["status"] == nil || l["path"] == nil {
			t.Fatalf("request log line lacks method, path, status or durationMs: %v", l)
		}
		if l["method"] == "PUT" && l["path"] == "/hello/Ann" && l["status"] == float64(204) {
			found = true
		}
	}
	if !found {
		t.Errorf("no log line for PUT /hello/Ann 204:\n%s", a.Logs())
	}
}

// TestTimeZone runs two replicas in zones 25 hours apart on one SQLite file:
// the same user's birthday is today in one and a day or two away in the other.
func TestTimeZone(t *testing.T) {
	db := dbtest.SQLite(t)
	east := start(t, db, "-time-zone", "Pacific/Kiritimati") // UTC+14
	west := start(t, db, "-time-zone", "Pacific/Pago_Pago")  // UTC-11
	eastLoc, _ := time.LoadLocation("Pacific/Kiritimati")
	westLoc, _ := time.LoadLocation("Pacific/Pago_Pago")
	for attempt := 0; ; attempt++ {
		eastToday, westToday := todayIn(eastLoc), todayIn(westLoc)
		gap := int(eastToday.Sub(westToday).Hours() / 24)
		if r := call(t, "PUT", east.URL+"/hello/Zoe", `{"dateOfBirth":"`+bornDaysAhead(eastToday, 0)+`"}`); r.Code != 204 {
			t.Fatalf("PUT = %+v, want 204", r)
		}
		gotEast := call(t, "GET", east.URL+"/hello/Zoe", "").Body
		gotWest := call(t, "GET", west.URL+"/hello/Zoe", "").Body
		if (!todayIn(eastLoc).Equal(eastToday) || !todayIn(westLoc).Equal(westToday)) && attempt == 0 {
			continue
		}
		if want := `{"message":"Hello, Zoe! Happy birthday!"}`; gotEast != want {
			t.Errorf("in UTC+14: %s, want %s", gotEast, want)
		}
		unit := "days"
		if gap == 1 {
			unit = "day"
		}
		if want := fmt.Sprintf(`{"message":"Hello, Zoe! Your birthday is in %d %s"}`, gap, unit); gotWest != want {
			t.Errorf("in UTC-11: %s, want %s", gotWest, want)
		}
		return
	}
}

// TestSmokeSuite runs the smoke test that slipway runs against a deployment
// against the real binary, so that it is known to pass on a good service.
func TestSmokeSuite(t *testing.T) {
	a := start(t, dbtest.SQLite(t))
	cmd := exec.Command("go", "test", "-tags", "smoke", "-count=1", "./smoke")
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "SLIPWAY_URL="+a.URL, "SLIPWAY_COMMIT="+commit)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smoke test failed: %v\n%s\nservice logs:\n%s", err, out, a.Logs())
	}
	if !strings.Contains(a.Logs(), `"path":"/hello/Smoke`) {
		t.Errorf("the smoke test passed without reaching the service; its output:\n%s", out)
	}
}

// TestVersionWithoutVCS checks what a binary built outside git reports.
func TestVersionWithoutVCS(t *testing.T) {
	bin := t.TempDir() + "/birthday-app"
	if err := goBuild(moduleRoot, bin, "-buildvcs=false"); err != nil {
		t.Fatal(err)
	}
	a := launch(t, bin, dbtest.SQLite(t))
	a.waitListening()
	r := call(t, "GET", a.URL+"/version", "")
	if !strings.HasPrefix(r.Body, `{"commit":"unknown","modified":false,"goVersion":"go`) {
		t.Errorf("/version of a binary without VCS information = %s, want commit \"unknown\"", r.Body)
	}
}

// TestStartupErrors checks that bad settings stop the process with exit code
// 1 and a message that says what to fix.
func TestStartupErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-database-url", "sqlite:" + t.TempDir() + "/missing/dir/x.db"}, "check -database-url or DATABASE_URL"},
		{[]string{"-database-url", "mysql://u:secret@127.0.0.1:1/db"}, "mysql://u:xxxxx@127.0.0.1:1/db"},
		{[]string{"-time-zone", "Nowhere/City"}, `time zone \"Nowhere/City\" is unknown`},
		{[]string{"-port", "-1"}, "port -1 is out of range"},
	}
	for _, tt := range tests {
		cmd := exec.Command(binary, tt.args...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("birthday-app %s: %v, want exit code 1; output:\n%s", strings.Join(tt.args, " "), err, out)
		}
		if !strings.Contains(string(out), tt.want) || strings.Contains(string(out), "secret") {
			t.Errorf("birthday-app %s: output lacks %q or shows the password:\n%s", strings.Join(tt.args, " "), tt.want, out)
		}
	}
}
