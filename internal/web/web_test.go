package web

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

const token = "s3cret-token"

func newTestHandler(t testing.TB, o Options) *Handler {
	t.Helper()
	if o.Apps == nil {
		o.Apps = &fakeApps{apps: []*fakeApp{sampleApp("web")}}
	}
	if o.Token == "" {
		o.Token = token
	}
	if o.Now == nil {
		o.Now = func() time.Time { return t0 }
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// do serves one request from addr (host:port) with the given cookies and
// headers.
func do(h http.Handler, method, target, addr string, body url.Values, header http.Header) *httptest.ResponseRecorder {
	var r *http.Request
	if body != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(body.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.RemoteAddr = addr
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

const (
	local  = "127.0.0.1:40000"
	remote = "192.0.2.7:40000"
)

func TestPagesRender(t *testing.T) {
	app := sampleApp("web")
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app, sampleApp("api")}}})
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{"web", "api", "bbbbbbb", "RC20261126_0900", "sha256:111111111111", "3/4 ready", ">degraded<", ">healthy<", "<strong>1</strong> commit not yet on prod", "http://127.0.0.1:8080", `data-live="/events"`}},
		{"/apps/web", []string{"live on prod", "verified on dev", "tests 3s", "Review the release", "RC20261126_0900 (aaaaaaa)"}},
		{"/apps/web/deployments/2", []string{"RC20261126_0900", "release command", "Replicas of prod now"}},
		{"/apps/web/deployments/3", []string{`data-log-src="/apps/web/builds/` + hash('b') + `/log"`, "tests took 3s"}},
		{"/history", []string{"push to master", "release command", `href="/apps/web/deployments/3"`, `href="/apps/api/deployments/3"`}},
		{"/history?app=web&kind=release", []string{"RC20261126_0900"}},
		{"/apps/web/diff?from=dev&to=prod", []string{"different images", "Commits dev runs and prod does not"}},
		{"/dora", []string{"does not compute DORA"}},
		{"/login", []string{`name="token"`}},
		{"/static/app.css", []string{"max-width: 720px"}},
		{"/static/app.js", []string{"EventSource"}},
	} {
		w := do(h, "GET", tc.path, local, nil, nil)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", tc.path, w.Code, w.Body)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(w.Body.String(), s) {
				t.Errorf("GET %s: no %q in\n%s", tc.path, s, w.Body)
			}
		}
	}
	w := do(h, "GET", "/history?app=web&kind=release", local, nil, nil)
	if strings.Contains(w.Body.String(), "push to master") {
		t.Errorf("history filtered on releases shows deploys:\n%s", w.Body)
	}
	for _, path := range []string{"/apps/nope", "/apps/web/deployments/77", "/nothing-here"} {
		if w := do(h, "GET", path, local, nil, nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, w.Code)
		}
	}
	if w := do(h, "GET", "/api/v1/nothing", local, nil, nil); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"code":"not_found"`) {
		t.Errorf("GET /api/v1/nothing: %d %s, want the API's JSON 404", w.Code, w.Body)
	}
}

func TestEverythingShownIsEscaped(t *testing.T) {
	app := sampleApp("web")
	app.diff = app.status.Pending
	app.hist[0].Reason = `<img src=x onerror=alert(2)>`
	app.status.Environments[1].LastFailure = ptr(`<b>bold</b>`)
	app.status.Environments[0].URL = "javascript:alert(3)"
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}})
	for _, path := range []string{"/", "/apps/web", "/apps/web/diff", "/history", "/apps/web/deployments/3"} {
		body := do(h, "GET", path, local, nil, nil).Body.String()
		for _, bad := range []string{"<script>alert", "<img src=x", "<b>bold", `href="javascript:`} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s shows %q unescaped", path, bad)
			}
		}
	}
	body := do(h, "GET", "/", local, nil, nil).Body.String()
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the overview does not show the subject as text:\n%s", body)
	}
	if !strings.Contains(body, "Mallory &lt;m@example.com&gt;") {
		t.Errorf("the overview does not show the author as text")
	}
	csp := do(h, "GET", "/", local, nil, nil).Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q does not limit scripts to the dashboard's own", csp)
	}
}

func TestReadsFromElsewhereNeedTheToken(t *testing.T) {
	h := newTestHandler(t, Options{AllowPlainWrites: true})
	w := do(h, "GET", "/apps/web", remote, nil, nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?next=%2Fapps%2Fweb" {
		t.Fatalf("remote read without a session: %d %q, want a redirect to sign in", w.Code, w.Header().Get("Location"))
	}
	if w := do(h, "GET", "/events", remote, nil, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("remote event stream without a session: %d, want 401", w.Code)
	}
	if w := do(h, "GET", "/apps/web", remote, nil, http.Header{"Authorization": {"Bearer " + token}}); w.Code != http.StatusOK {
		t.Errorf("remote read with the bearer token: %d", w.Code)
	}
	cookie := signIn(t, h, remote)
	if w := do(h, "GET", "/apps/web", remote, nil, http.Header{"Cookie": {cookie}}); w.Code != http.StatusOK {
		t.Errorf("remote read with a session: %d", w.Code)
	}
	forged := strings.Repeat("0", 32) + "." + strings.Repeat("0", 64)
	if w := do(h, "GET", "/apps/web", remote, nil, http.Header{"Cookie": {sessionCookie + "=" + forged}}); w.Code != http.StatusSeeOther {
		t.Errorf("remote read with a forged session: %d, want a redirect", w.Code)
	}
}

// signIn signs in with the token and returns the session cookie, as a
// Cookie header.
func signIn(t *testing.T, h http.Handler, addr string) string {
	t.Helper()
	w := do(h, "POST", "/login", addr, url.Values{"token": {token}, "next": {"/apps/web"}}, http.Header{"Origin": {"http://example.com"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/apps/web" {
		t.Fatalf("sign in: %d %q\n%s", w.Code, w.Header().Get("Location"), w.Body)
	}
	res := w.Result()
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
			}
			if strings.Contains(c.Value, token) {
				t.Errorf("the session cookie holds the token")
			}
			return c.Name + "=" + c.Value
		}
	}
	t.Fatal("sign in set no session cookie")
	return ""
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func TestReleaseFromThePage(t *testing.T) {
	app := sampleApp("web")
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}})
	origin := http.Header{"Origin": {"http://example.com"}}

	// The confirmation asks for the token first.
	w := do(h, "GET", "/apps/web/release?env=prod", local, nil, nil)
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/login?next=%2Fapps%2Fweb%2Frelease") {
		t.Fatalf("confirmation without a session: %d %q, want a redirect to sign in", w.Code, w.Header().Get("Location"))
	}
	// A wrong token is refused.
	w = do(h, "POST", "/login", local, url.Values{"token": {"wrong"}}, origin)
	if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Fatalf("sign in with a wrong token: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	cookie := signIn(t, h, local)
	withCookie := http.Header{"Cookie": {cookie}, "Origin": {"http://example.com"}}

	w = do(h, "GET", "/apps/web/release?env=prod", local, nil, withCookie)
	if w.Code != http.StatusOK {
		t.Fatalf("confirmation: %d\n%s", w.Code, w.Body)
	}
	page := w.Body.String()
	for _, s := range []string{"Release commit bbbbbbb “&lt;script&gt;", "sha256:" + strings.Repeat("2", 64),
		"prod goes from RC20261126_0900, commit aaaaaaa, sha256:111111111111 to a new release, RC20261127_0930", "verified on dev"} {
		if !strings.Contains(page, s) {
			t.Errorf("the confirmation does not say %q:\n%s", s, page)
		}
	}
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form token in the confirmation:\n%s", page)
	}
	form := url.Values{"env": {"prod"}, "commit": {hash('b')}, "csrf": {m[1]}}

	for _, tc := range []struct {
		name   string
		form   url.Values
		header http.Header
		want   int
	}{
		{"no session", form, origin, http.StatusUnauthorized},
		{"no form token", url.Values{"env": {"prod"}, "commit": {hash('b')}}, withCookie, http.StatusForbidden},
		{"another session's form token", url.Values{"env": {"prod"}, "csrf": {strings.Repeat("a", 32)}}, withCookie, http.StatusForbidden},
		{"from another site", form, http.Header{"Cookie": {cookie}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"from a sandboxed page", form, http.Header{"Cookie": {cookie}, "Origin": {"null"}}, http.StatusForbidden},
		{"cross-site fetch", form, http.Header{"Cookie": {cookie}, "Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
	} {
		if w := do(h, "POST", "/apps/web/release", local, tc.form, tc.header); w.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, w.Code, tc.want)
		}
	}
	if calls := app.recorded(); len(calls) != 0 {
		t.Fatalf("refused posts made changes: %q", calls)
	}
	w = do(h, "POST", "/apps/web/release", local, form, withCookie)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/apps/web/deployments/99" {
		t.Fatalf("release: %d %q\n%s", w.Code, w.Header().Get("Location"), w.Body)
	}
	want := []string{"release env=prod commit=" + hash('b') + " force=false reason= trigger=release from the dashboard"}
	if diff := cmp.Diff(want, app.recorded()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestRefusedReleaseShowsTheReason(t *testing.T) {
	app := sampleApp("web")
	app.refuse = &pipeline.RefusedError{Env: "prod", Commit: hash('c'), Reason: "ccccccc is not verified on dev", Err: pipeline.ErrNotVerified}
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}})
	cookie := signIn(t, h, local)
	hdr := http.Header{"Cookie": {cookie}}
	page := do(h, "GET", "/apps/web/release?env=prod&commit=ccccccc", local, nil, hdr).Body.String()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form token:\n%s", page)
	}
	w := do(h, "POST", "/apps/web/release", local, url.Values{"env": {"prod"}, "commit": {"ccccccc"}, "csrf": {m[1]}}, hdr)
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "ccccccc is not verified on dev") || !strings.Contains(w.Body.String(), "The release was refused") {
		t.Errorf("refused release: %d\n%s", w.Code, w.Body)
	}
}

func TestRollbackAndScaleConfirmations(t *testing.T) {
	app := sampleApp("web")
	// prod ran RC_OLD of c… before RC20261126_0900.
	app.hist = append(app.hist, ledger.Deployment{ID: 0, App: "web", Env: "prod", Kind: ledger.KindRelease, Commit: hash('c'),
		Digest: "sha256:" + strings.Repeat("3", 64), ReleaseName: "RC20261120_0800", State: ledger.StateSucceeded, CreatedAt: t0.Add(-7 * 24 * time.Hour)})
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}})
	hdr := http.Header{"Cookie": {signIn(t, h, local)}}
	for _, tc := range []struct {
		path string
		want string
	}{
		{"/apps/web/rollback?env=prod", "prod goes from RC20261126_0900, commit aaaaaaa, sha256:111111111111 back to RC20261120_0800: commit ccccccc, sha256:333333333333."},
		{"/apps/web/rollback?env=dev", "dev is automatic"},
		{"/apps/web/release?env=prod&force=1", "needs a reason"},
		{"/apps/web/release?env=prod&force=1&reason=hotfix+%3Cb%3E", "recorded as forced, with the reason “hotfix &lt;b&gt;”"},
		{"/apps/web/scale?env=prod&replicas=6", "prod goes from 4 to 6 replicas of RC20261126_0900, commit aaaaaaa"},
		{"/apps/web/scale?env=prod&replicas=0", "from 1 to 1000"},
	} {
		w := do(h, "GET", tc.path, local, nil, hdr)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("GET %s: %d, want %q in\n%s", tc.path, w.Code, tc.want, w.Body)
		}
	}
	page := do(h, "GET", "/apps/web/scale?env=prod&replicas=6", local, nil, hdr).Body.String()
	m := csrfInput.FindStringSubmatch(page)
	w := do(h, "POST", "/apps/web/scale", local, url.Values{"env": {"prod"}, "replicas": {"6"}, "csrf": {m[1]}}, hdr)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("scale: %d\n%s", w.Code, w.Body)
	}
	if diff := cmp.Diff([]string{"scale env=prod replicas=6"}, app.recorded()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestSignInGoesOnlyToLocalPages(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example"} {
		w := do(h, "POST", "/login", local, url.Values{"token": {token}, "next": {next}}, nil)
		if loc := w.Header().Get("Location"); loc != "/" {
			t.Errorf("sign in with next=%q goes to %q, want /", next, loc)
		}
	}
}

func TestDeploymentStepsAndBuildLog(t *testing.T) {
	app := sampleApp("web")
	app.hist[0].State, app.hist[0].Step, app.hist[0].FinishedAt = ledger.StateRolling, "health", time.Time{}
	app.hist[0].Schema = ledger.Schema{Known: true, Version: 3, Floor: 2, FloorBy: "0003_drop_date_of_birth"}
	steps := func(ctx context.Context, a apiApp, id int64) (any, error) {
		if id != 3 {
			return nil, errors.New("wrong deployment")
		}
		return []map[string]any{
			{"name": "deploy", "state": "succeeded", "started": t0.Add(-70 * time.Second), "finished": t0.Add(-40 * time.Second)},
			{"name": "health", "state": "running", "started": t0.Add(-40 * time.Second), "message": "<i>2 of 4 ready</i>"},
		}, nil
	}
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}, Steps: steps})
	body := do(h, "GET", "/apps/web/deployments/3", local, nil, nil).Body.String()
	for _, s := range []string{"deploy", "30s", "40s so far", "&lt;i&gt;2 of 4 ready", "?follow=1", "data-elapsed-from",
		"built for schema 3; its migrations need code built for schema 2 or later (0003_drop_date_of_birth)"} {
		if !strings.Contains(body, s) {
			t.Errorf("deployment page: no %q in\n%s", s, body)
		}
	}
	w := do(h, "GET", "/apps/web/builds/"+hash('b')+"/log?follow=1", local, nil, nil)
	if w.Code != http.StatusOK || w.Body.String() != "testing…\nok\n" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("build log: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if w := do(h, "GET", "/apps/web/builds/..%2f..%2fetc/log", local, nil, nil); w.Code != http.StatusBadRequest {
		t.Errorf("build log of a bad commit: %d, want 400", w.Code)
	}
}

func TestDORAPage(t *testing.T) {
	var asked []string
	report := func(ctx context.Context, app string, since time.Duration) (any, error) {
		asked = append(asked, fmt.Sprintf("%s %s", app, since))
		days := []map[string]any{}
		for i := range int(since.Hours() / 24) {
			days = append(days, map[string]any{"date": t0.AddDate(0, 0, i-int(since.Hours()/24)).Format("2006-01-02"), "deployments": i % 4, "failures": i % 2})
		}
		return map[string]any{"app": app, "window": "x", "deployments": 12, "deploymentsPerDay": 0.4,
			"leadTimeMedianSeconds": 5400.0, "leadTimeP90Seconds": 90000.0, "changeFailures": 3, "changeFailureRate": 0.25,
			"timeToRestoreMedianSeconds": 600.0, "timeToRestoreP90Seconds": 1800.0, "restores": 3, "daily": days}, nil
	}
	h := newTestHandler(t, Options{DORA: report})
	w := do(h, "GET", "/dora?app=web&window=7d", local, nil, nil)
	body := w.Body.String()
	for _, s := range []string{"12 (0.40 a day)", "median 1h 30m, p90 25h 0m", "25% (3 of 12)", "median 10m 0s, p90 30m 0s", "<svg", "<rect", "Lead time for changes", "hatched"} {
		if !strings.Contains(body, s) {
			t.Errorf("DORA page: no %q in\n%s", s, body)
		}
	}
	if diff := cmp.Diff([]string{"web 168h0m0s", "web 720h0m0s", "web 2160h0m0s"}, asked); diff != "" {
		t.Errorf("reports asked for (-want +got):\n%s", diff)
	}
	if w := do(h, "GET", "/dora?app=nope", local, nil, nil); w.Code != http.StatusNotFound {
		t.Errorf("DORA of an unknown app: %d", w.Code)
	}
}

// readEvent reads one SSE event's data from r.
func readEvent(r *bufio.Reader) (string, error) {
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && data != nil:
			return strings.Join(data, "\n"), nil
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
}

func TestEventsDeliverAChange(t *testing.T) {
	app := sampleApp("web")
	hub := newFakeHub()
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}, Subscribe: hub.Subscribe, ReplicaRefresh: time.Hour})
	srv := httptest.NewServer(h)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	rd := bufio.NewReader(res.Body)
	first, err := readEvent(rd)
	if err != nil || !strings.Contains(first, "bbbbbbb") {
		t.Fatalf("first event: %v\n%s", err, first)
	}

	c := hash('c')
	app.setStatus(func(st *pipeline.Status) {
		st.Environments[0].Commit, st.Environments[0].ShortCommit = &c, ptr(c[:7])
		st.Pending = append([]pipeline.Commit{{Hash: c, Short: c[:7], Subject: "Say hi & bye", Author: "Demo"}}, st.Pending...)
	})
	start := time.Now()
	hub.Publish("web")
	got := make(chan string, 1)
	go func() {
		ev, _ := readEvent(rd)
		got <- ev
	}()
	select {
	case ev := <-got:
		if !strings.Contains(ev, "ccccccc") || !strings.Contains(ev, "Say hi &amp; bye") || !strings.Contains(ev, "<strong>2</strong> commits not yet on prod") {
			t.Errorf("the event after the change does not show it:\n%s", ev)
		}
		t.Logf("change delivered in %s", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("no event within a second of the change")
	}

	// The refresher stops, and its subscription ends, with the last stream.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for hub.subscribers() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the refresher still subscribes after the last stream closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventsWithoutAHubPoll(t *testing.T) {
	app := sampleApp("web")
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}, ReplicaRefresh: 20 * time.Millisecond})
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	if _, err := readEvent(rd); err != nil {
		t.Fatal(err)
	}
	app.setStatus(func(st *pipeline.Status) { st.Environments[1].Replicas.Ready = 4; st.Environments[1].Healthy = true })
	done := make(chan string, 1)
	go func() { ev, _ := readEvent(rd); done <- ev }()
	select {
	case ev := <-done:
		if !strings.Contains(ev, "4/4 ready") {
			t.Errorf("event after replicas became ready:\n%s", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("replicas are not read again while a stream is open")
	}
}

type apiApp = api.App

func TestMountedBesideTheAPI(t *testing.T) {
	apps := &fakeApps{apps: []*fakeApp{sampleApp("web")}}
	srv := api.NewServer(apps, token, nil)
	srv.Handle("/", newTestHandler(t, Options{Apps: apps}))
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
	}{
		{"GET", "/", http.StatusOK, "text/html; charset=utf-8"},
		{"GET", "/apps/web", http.StatusOK, "text/html; charset=utf-8"},
		{"GET", "/healthz", http.StatusOK, "application/json"},
		{"GET", "/api/v1/apps", http.StatusOK, "application/json"},
		{"GET", "/api/v1/apps/web/history", http.StatusOK, "application/json"},
		{"POST", "/api/v1/releases", http.StatusUnauthorized, "application/json"},
		{"GET", "/api/v1/nothing", http.StatusNotFound, "application/json"},
	} {
		w := do(srv, tc.method, tc.path, local, nil, nil)
		if w.Code != tc.status || w.Header().Get("Content-Type") != tc.contentType {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, w.Code, w.Header().Get("Content-Type"), tc.status, tc.contentType)
		}
	}
}

func TestRecentCommitsNameWhatRuns(t *testing.T) {
	f := sampleApp("web")
	a := hash('a')
	app := &listingApp{fakeApp: f, recent: []pipeline.Commit{f.status.Pending[0], {Hash: a, Short: a[:7], Subject: "First & only", Author: "Ada", Time: t0.Add(-48 * time.Hour)}}}
	h := newTestHandler(t, Options{Apps: appList{app}})
	for range 3 {
		if body := do(h, "GET", "/", local, nil, nil).Body.String(); !strings.Contains(body, "First &amp; only") {
			t.Fatalf("the overview does not name prod's commit:\n%s", body)
		}
	}
	if app.asked != 1 {
		t.Errorf("recent commits listed %d times for 3 overviews, want once", app.asked)
	}
	body := do(h, "GET", "/apps/web", local, nil, nil).Body.String()
	if !strings.Contains(body, "First &amp; only") || !strings.Contains(body, "Ada") {
		t.Errorf("the pipeline page does not show the recent commits:\n%s", body)
	}
}

// FuzzSession checks that no cookie value but one the dashboard signed
// opens a session.
func FuzzSession(f *testing.F) {
	h := newTestHandler(f, Options{})
	nonce := strings.Repeat("ab", 16)
	f.Add(nonce + "." + h.mac("session", nonce))
	f.Add(nonce + "." + h.mac("csrf", nonce))
	f.Add(strings.Repeat("0", 32) + ".")
	f.Add("")
	f.Fuzz(func(t *testing.T, value string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: value})
		got, ok := h.session(r)
		if !ok {
			return
		}
		// net/http drops bytes a cookie may not hold: compare what was sent.
		if c, err := r.Cookie(sessionCookie); err != nil || c.Value != got+"."+h.mac("session", got) {
			t.Fatalf("cookie %q opened the session of nonce %q", r.Header.Get("Cookie"), got)
		}
	})
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestOverviewGolden compares the overview's live part, as streams get it,
// with testdata/overview.golden (go test -run OverviewGolden -update).
func TestOverviewGolden(t *testing.T) {
	app := sampleApp("web")
	app.status.Environments[1].Rollout = &pipeline.Rollout{ID: 2, Kind: "release", Commit: hash('b'), Release: "RC20261127_0930", Step: "health", Waiting: "health: attempt 2 failed, trying again in 2s"}
	app.status.Environments[1].Message = ptr("1 replica crash-looping")
	stopped := sampleApp("api")
	stopped.status.Environments[0].Stopped = true
	stopped.status.Environments[1] = pipeline.EnvStatus{Name: "prod", Mode: "controlled", Branch: "release"}
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app, stopped}}})
	got, err := h.renderOverview(h.readOverview(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "overview.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run OverviewGolden -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("overview (-want +got), run with -update if the change is meant:\n%s", diff)
	}
}

func (f *fakeApp) statusReads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statusN
}

func TestAChangeRereadsOnlyItsApp(t *testing.T) {
	web, other := sampleApp("web"), sampleApp("api")
	hub := newFakeHub()
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{web, other}}, Subscribe: hub.Subscribe, ReplicaRefresh: time.Hour})
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	if _, err := readEvent(rd); err != nil {
		t.Fatal(err)
	}
	before := other.statusReads()
	web.setStatus(func(st *pipeline.Status) { st.Environments[0].URL = "http://changed.example" })
	hub.Publish("web")
	ev, err := readEvent(rd)
	if err != nil || !strings.Contains(ev, "http://changed.example") {
		t.Fatalf("event after the change: %v\n%s", err, ev)
	}
	if got := other.statusReads(); got != before {
		t.Errorf("a change of web read api's status again (%d reads, was %d)", got, before)
	}
	if !strings.Contains(ev, `id="app-api"`) {
		t.Errorf("the overview after a change of web lost api:\n%s", ev)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	h := newTestHandler(t, Options{ReplicaRefresh: time.Hour})
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	if _, err := readEvent(rd); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, rd)
		ended <- err
	}()
	h.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("an open stream outlived Close")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Config.Shutdown(sctx); err != nil {
		t.Errorf("shutdown after Close: %v", err)
	}
}

func TestNoSignInOverPlainHTTPFromElsewhere(t *testing.T) {
	app := sampleApp("web")
	h := newTestHandler(t, Options{Apps: &fakeApps{apps: []*fakeApp{app}}})
	w := do(h, "POST", "/login", remote, url.Values{"token": {token}}, nil)
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 || !strings.Contains(w.Body.String(), "--api-allow-plain-writes") {
		t.Errorf("sign in from another machine over plain HTTP: %d, cookies %v\n%s", w.Code, w.Result().Cookies(), w.Body)
	}
	// Even a session made elsewhere changes nothing from there.
	cookie := signIn(t, h, local)
	page := do(h, "GET", "/apps/web/scale?env=prod&replicas=2", local, nil, http.Header{"Cookie": {cookie}}).Body.String()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form token:\n%s", page)
	}
	w = do(h, "POST", "/apps/web/scale", remote, url.Values{"env": {"prod"}, "replicas": {"2"}, "csrf": {m[1]}}, http.Header{"Cookie": {cookie}})
	if w.Code != http.StatusForbidden || len(app.recorded()) != 0 {
		t.Errorf("a change from another machine over plain HTTP: %d, calls %q", w.Code, app.recorded())
	}
}
