package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// deployed is one environment deployed for a test.
type deployed struct {
	b    *Backend
	env  string
	spec deploy.Spec
}

func deployFixture(t *testing.T, env string, replicas int) *deployed {
	t.Helper()
	v1r, _, _ := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec(env)
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, replicas
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return &deployed{b: b, env: env, spec: spec}
}

func (d *deployed) status(t *testing.T) deploy.Status {
	t.Helper()
	st, err := d.b.Status(t.Context(), d.env)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls the environment's status until cond holds, failing the test
// after a minute.
func (d *deployed) waitFor(t *testing.T, what string, cond func(deploy.Status) bool) deploy.Status {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := d.status(t)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s; status: %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "iso", 1)
	st := d.status(t)
	_, body := httpGet(t, st.URL+"/env")
	if os.Geteuid() != 0 {
		if st.Isolation != deploy.IsolationProcess {
			t.Errorf("not root: isolation = %q, want %q", st.Isolation, deploy.IsolationProcess)
		}
		return
	}
	if st.Isolation != deploy.IsolationSandbox {
		t.Fatalf("as root, isolation = %q, want %q (supervisor log: %s)", st.Isolation, deploy.IsolationSandbox,
			strings.Join(lastLines(d.b.ownDir("iso")+"/supervisor.log", 5), "\n"))
	}
	for _, want := range []string{"DATA_DIR=/slipway/data", "DATABASE_URL=sqlite:/slipway/data/fixture.db"} {
		if !strings.Contains(body, want) {
			t.Errorf("replica's /env = %q, want it to contain %q (data directory mounted)", body, want)
		}
	}
}

func TestPlainProcess(t *testing.T) {
	t.Parallel()
	v1r, _, _ := fixtureReleases(t)
	dir := shortTempDir(t)
	b, err := New(Options{Dir: dir, NoSandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(context.Background(), "plain") })
	spec := baseSpec("plain")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 1
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(t.Context(), "plain")
	if err != nil {
		t.Fatal(err)
	}
	if st.Isolation != deploy.IsolationProcess {
		t.Errorf("isolation = %q, want %q", st.Isolation, deploy.IsolationProcess)
	}
	_, body := httpGet(t, st.URL+"/env")
	for _, want := range []string{"DATA_DIR=" + b.ownDir("plain") + "/data\n", "DATABASE_URL=sqlite:" + b.ownDir("plain") + "/data/fixture.db\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("replica's /env = %q, want it to contain %q (the host's directory)", body, want)
		}
	}
}

func TestBalancerPassesThrough(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "lb", 2)
	st := d.status(t)

	t.Run("headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", st.URL+"/headers", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got http.Header
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		// The client is no trusted proxy: what it claims is replaced.
		if v := got.Get("X-Forwarded-For"); v != "127.0.0.1" {
			t.Errorf("replica saw X-Forwarded-For %q, want %q", v, "127.0.0.1")
		}
		if v := got.Get("X-Forwarded-Proto"); v != "http" {
			t.Errorf("replica saw X-Forwarded-Proto %q, want http", v)
		}
		if v := resp.Header.Get("Slipway-Environment"); v != "lb" {
			t.Errorf("Slipway-Environment = %q, want lb", v)
		}
		if v := resp.Header.Get("Slipway-Commit"); v != d.spec.Commit {
			t.Errorf("Slipway-Commit = %q, want %s", v, d.spec.Commit)
		}
	})

	t.Run("bodies", func(t *testing.T) {
		for _, tt := range []struct {
			method string
			body   io.Reader
			want   string
		}{
			{"POST", strings.NewReader("hello"), "POST 5 hello"},
			{"PUT", strings.NewReader(`{"dateOfBirth":"2000-01-01"}`), `PUT 28 {"dateOfBirth":"2000-01-01"}`},
			{"POST", io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked")), "POST -1 chunked"},
			{"DELETE", nil, "DELETE 0 "},
		} {
			req, _ := http.NewRequest(tt.method, st.URL+"/body", tt.body)
			if _, ok := tt.body.(*strings.Reader); !ok && tt.body != nil {
				req.ContentLength = -1
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tt.want {
				t.Errorf("%s /body answered %q, want %q", tt.method, b, tt.want)
			}
		}
		resp, err := http.Head(st.URL + "/version")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("HEAD /version: %v, %v", resp, err)
		}
	})

	t.Run("raw HTTP/1.x", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(st.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		// Two pipelined requests, one with a body sent after 100 Continue,
		// then an HTTP/1.0 request, which ends the connection.
		fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: x\r\n\r\n"+
			"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"+
			"GET /version HTTP/1.0\r\n\r\n")
		for i, want := range []string{d.spec.Commit + "\n", "POST 3 abc", d.spec.Commit + "\n"} {
			req := &http.Request{Method: "GET"}
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			if resp.StatusCode == http.StatusContinue {
				if resp, err = http.ReadResponse(br, req); err != nil {
					t.Fatalf("response %d after 100 Continue: %v", i, err)
				}
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != want || resp.StatusCode != 200 {
				t.Errorf("response %d = %s %q, %v; want 200 %q", i, resp.Status, b, err, want)
			}
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("after an HTTP/1.0 request the connection stays open (%v)", err)
		}
		bad, err := net.Dial("tcp", strings.TrimPrefix(st.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		fmt.Fprintf(bad, "NOT HTTP\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(bad), nil); err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a malformed request got %v, %v; want 400", resp, err)
		}
	})

	t.Run("spread over replicas", func(t *testing.T) {
		seen := map[string]int{}
		for range 20 {
			_, body := httpGet(t, st.URL+"/")
			seen[strings.TrimSpace(body)]++
		}
		if len(seen) != 2 {
			t.Errorf("20 requests reached %v, want both replicas", seen)
		}
	})

	t.Run("streaming", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", st.URL+"/stream?hold=1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// The replica sends one chunk and then holds the response open:
		// the chunk arrives only if the balancer does not buffer.
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "chunk 0\n" {
			t.Fatalf("first chunk = %q, %v; want it before the response ends", line, err)
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(st.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade answered %s", resp.Status)
		}
		fmt.Fprintf(conn, "ping\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo ping\n" {
			t.Fatalf("over the upgraded connection got %q, %v; want %q", line, err, "echo ping\n")
		}
	})

	t.Run("logs", func(t *testing.T) {
		var buf strings.Builder
		if err := d.b.Logs(t.Context(), "lb", false, &buf); err != nil {
			t.Fatal(err)
		}
		for _, r := range st.Instances {
			if want := "[" + r.Name + "] fixture: listening on"; !strings.Contains(buf.String(), want) {
				t.Errorf("logs lack %q:\n%s", want, buf.String())
			}
		}
	})
}

func TestKilledReplicaLeavesPoolAndComesBack(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "kill", 2)
	st := d.status(t)
	victim := st.Instances[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Requests keep succeeding: a refused connection is retried on the
	// other replica.
	for range 20 {
		if resp, body := httpGet(t, st.URL+"/"); resp.StatusCode != 200 {
			t.Fatalf("after kill -9 of %s: %s %s", victim.Name, resp.Status, body)
		}
	}
	d.waitFor(t, victim.Name+" to leave the pool", func(st deploy.Status) bool {
		for _, r := range st.Instances {
			if r.Name == victim.Name {
				return !r.Ready || r.Restarts > 0
			}
		}
		return false
	})
	t.Logf("%s left the pool %s after kill -9", victim.Name, time.Since(killed).Round(time.Millisecond))
	back := d.waitFor(t, victim.Name+" to come back", func(st deploy.Status) bool {
		for _, r := range st.Instances {
			if r.Name == victim.Name {
				return r.Ready && r.Restarts == 1 && r.PID != victim.PID
			}
		}
		return false
	})
	t.Logf("%s back in the pool %s after kill -9", victim.Name, time.Since(killed).Round(time.Millisecond))
	if !back.Healthy || back.Replicas.Ready != 2 {
		t.Errorf("after the restart: %+v", back)
	}
}

func TestUnreadyReplicaIsEjected(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "eject", 2)
	st := d.status(t)
	sick, well := st.Instances[0], st.Instances[1]
	resp, err := http.Post("http://"+sick.Address+"/control/unready", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	d.waitFor(t, sick.Name+" to be ejected", func(st deploy.Status) bool {
		return st.Replicas.Ready == 1 && !st.Healthy && strings.Contains(st.Message, sick.Name)
	})
	for range 10 {
		if _, body := httpGet(t, st.URL+"/"); strings.TrimSpace(body) != "hello from "+well.Name {
			t.Fatalf("request reached %q, want only %s while %s fails readiness", body, well.Name, sick.Name)
		}
	}
}

func TestCrashingReleaseFailsRollout(t *testing.T) {
	t.Parallel()
	v1r, _, _ := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("crash")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, "crashes", 1
	spec.Env = map[string]string{"FIXTURE_CRASH": "1"}
	err := b.Apply(t.Context(), spec)
	var re *deploy.RolloutError
	if !errors.As(err, &re) {
		t.Fatalf("Apply(crashing build) = %v, want a RolloutError", err)
	}
	if !strings.Contains(re.Reason, "exited 3 times before becoming ready") ||
		!strings.Contains(strings.Join(re.LastLogs, "\n"), "crashing on purpose") {
		t.Errorf("RolloutError = %v; want the exits and the replica's last lines", re)
	}
	if _, err := b.Status(t.Context(), "crash"); !errors.Is(err, deploy.ErrNotDeployed) {
		t.Errorf("after a failed first deploy, Status error = %v, want ErrNotDeployed", err)
	}
}

func TestCrashLoopIsReported(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "loop", 2)
	st := d.status(t)
	victim := st.Instances[0]
	// From now on the fixture exits at start.
	if err := os.WriteFile(d.b.ownDir("loop")+"/data/crash", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = d.waitFor(t, victim.Name+" to be reported crash-looping", func(st deploy.Status) bool {
		return strings.Contains(st.Message, victim.Name+" is crash-looping")
	})
	t.Logf("status message: %s", st.Message)
	if st.Healthy || st.Replicas.Ready != 1 {
		t.Errorf("with a crash-looping replica: healthy %v, ready %d; want unhealthy, 1 ready", st.Healthy, st.Replicas.Ready)
	}
	if _, body := httpGet(t, st.URL+"/"); !strings.Contains(body, "hello from") {
		t.Errorf("the other replica does not serve: %q", body)
	}
	var logs strings.Builder
	if err := d.b.Logs(t.Context(), "loop", false, &logs); err != nil {
		t.Fatal(err)
	}
	if want := "[" + victim.Name + "] fixture: crashing on purpose"; !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %q", want)
	}
}

func TestLogFileRotatesAndFollows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lf, err := openLog(dir+"/r1.log", 64)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	for i := range 10 {
		fmt.Fprintf(lf, "line %d of the replica's output\n", i)
	}
	if fi, err := os.Stat(dir + "/r1.log"); err != nil || fi.Size() > 64 {
		t.Fatalf("log file not capped at 64 bytes: %v, %v", fi, err)
	}
	if got := lastLines(dir+"/r1.log", 2); len(got) != 2 || got[1] != "line 9 of the replica's output" {
		t.Errorf("lastLines = %q", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- writeLogs(ctx, dir, true, pw); pw.Close() }()
	br := bufio.NewReader(pr)
	readUntil := func(want string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("follow ended before %q: %v", want, err)
			}
			if line == want {
				return
			}
		}
	}
	readUntil("[r1] line 9 of the replica's output\n")
	fmt.Fprintf(lf, "written while following\n")
	readUntil("[r1] written while following\n")
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLivenessFailureRestartsReplica(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "live", 2)
	st := d.status(t)
	sick := st.Instances[0]
	resp, err := http.Post("http://"+sick.Address+"/control/sick", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	d.waitFor(t, sick.Name+" to be restarted", func(st deploy.Status) bool {
		for _, r := range st.Instances {
			if r.Name == sick.Name {
				return r.Restarts == 1 && r.Ready && r.PID != sick.PID
			}
		}
		return false
	})
}

func TestStopKillsReplicaIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	v1r, _, _ := fixtureReleases(t)
	b := newTestBackend(t, shortTempDir(t))
	spec := baseSpec("stubborn")
	spec.Image, spec.Commit, spec.Version, spec.Replicas = v1r.Image, v1r.Commit, v1r.Version, 2
	spec.Env = map[string]string{"FIXTURE_IGNORE_TERM": "1"}
	spec.Strategy.TerminationGracePeriod = 300 * time.Millisecond
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(t.Context(), "stubborn")
	if err != nil {
		t.Fatal(err)
	}
	spec.Replicas = 1
	if err := b.Apply(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	after, err := b.Status(t.Context(), "stubborn")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Instances {
		if !slices.ContainsFunc(after.Instances, func(x deploy.Replica) bool { return x.Name == r.Name }) {
			if err := syscall.Kill(r.PID, 0); err == nil {
				t.Errorf("replica %s (pid %d) ignores SIGTERM and still runs after the scale-down", r.Name, r.PID)
			}
			return
		}
	}
	t.Fatalf("scaling 2 -> 1 removed no replica: %+v", after.Instances)
}

// TestRollingUpdateReportsProgress follows a rolling update through the
// reports a caller that wants them gets: new replicas starting and ready,
// old ones draining, and at the end only the new version.
func TestRollingUpdateReportsProgress(t *testing.T) {
	t.Parallel()
	d := deployFixture(t, "progress", 2)
	_, v2r, _ := fixtureReleases(t)
	spec := d.spec
	spec.Image, spec.Commit, spec.Version = v2r.Image, v2r.Commit, v2r.Version
	var mu sync.Mutex
	var reports []string
	applied := false
	ctx := deploy.WithProgress(t.Context(), func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		if applied {
			t.Errorf("progress reported after Apply returned: %q", msg)
		}
		reports = append(reports, msg)
	})
	if err := d.b.Apply(ctx, spec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	mu.Lock()
	applied = true
	got := slices.Clone(reports)
	mu.Unlock()
	t.Logf("reports:\n%s", strings.Join(got, "\n"))
	if len(got) < 2 {
		t.Fatalf("got %d reports, want the rollout's steps and its end", len(got))
	}
	want := "2 of 2 replicas of " + v2r.Version + " ready"
	if last := got[len(got)-1]; last != want {
		t.Errorf("last report %q, want %q", last, want)
	}
	sawOld := false
	for _, r := range got {
		sawOld = sawOld || strings.Contains(r, "old serving") || strings.Contains(r, "old draining")
	}
	if !sawOld {
		t.Errorf("no report mentions the old replicas still serving or draining")
	}
	// Without a listener nothing watches: Apply works as before.
	spec.Replicas = 1
	if err := d.b.Apply(t.Context(), spec); err != nil {
		t.Fatalf("Apply without progress: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != len(got) {
		t.Errorf("a caller that wants no progress made %d reports", len(reports)-len(got))
	}
}
