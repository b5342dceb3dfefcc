//go:build integration

package crash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/notify"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/testenv"
)

// deadline bounds each wait: a step takes seconds, a build of the sample
// app a minute, or three on a machine loaded 20 times over its cores.
const deadline = 8 * time.Minute

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// slipwayBinary builds the slipway binary once for all scenarios.
func slipwayBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "swcrash-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "slipway")
		out, err := exec.Command("go", "build", "-o", binPath, "slipway.dev/slipway/cmd/slipway").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build slipway: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// world is one scenario's slipway: the sample app's repository and clone,
// a slipway.yaml with dev → staging → prod, slipway serve as a process of
// its own, and the supervisors it starts. Crash points are armed through
// a file (SLIPWAY_CRASH_AT=@FILE), so serve and the supervisors it starts
// all read the point to crash at.
type world struct {
	t      *testing.T
	root   string // everything of the scenario is below
	ws     demo.Workspace
	urls   map[string]string // environment → http://address
	apiURL string
	reg    string
	bin    string
	args   []string
	token  string
	hooks  *receiver

	crashAt, record string // the crash point file, the crash record
	// release is every environment's release command (none when empty).
	release config.Command
	// env is more of serve's environment, which the supervisors it
	// starts inherit.
	env []string

	serve     *exec.Cmd
	serveDone chan error
	serveOut  *lockedBuffer
}

var envs = []string{"dev", "staging", "prod"}

func newWorld(t *testing.T, smoke bool) *world {
	t.Helper()
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	root, err := os.MkdirTemp("", "swc") // short: unix sockets live below
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, root: root, urls: map[string]string{}, bin: slipwayBinary(t)}
	addr := map[string]string{}
	for _, e := range envs {
		addr[e] = testenv.FreeAddr(t)
		w.urls[e] = "http://" + addr[e]
	}
	apiAddr := testenv.FreeAddr(t)
	w.apiURL, w.reg = "http://"+apiAddr, testenv.FreeAddr(t)
	ws, err := demo.Prepare(context.Background(), demo.Options{Dir: filepath.Join(root, "demo"), DevAddr: addr["dev"], ProdAddr: addr["prod"]})
	if err != nil {
		t.Fatal(err)
	}
	w.ws = ws
	w.hooks = startReceiver(t)
	w.writeConfig(addr, smoke)
	w.crashAt, w.record = filepath.Join(root, "crash-at"), filepath.Join(root, "crash-record")
	if err := os.WriteFile(w.crashAt, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.args = []string{"serve", "--config", ws.Config, "--data-dir", ws.DataDir, "--api-addr", apiAddr, "--registry-addr", w.reg}
	t.Cleanup(func() {
		if w.serve != nil {
			w.stopServe()
		}
		// serve leaves environments running on purpose; the test stops them.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := local.New(local.Options{Dir: filepath.Join(ws.DataDir, "run", demo.AppName), App: demo.AppName,
			LegacyDir: filepath.Join(ws.DataDir, "run")})
		if err == nil {
			for _, e := range envs {
				if err := b.Stop(ctx, e); err != nil {
					t.Logf("stop %s: %v", e, err)
				}
			}
		}
		if !t.Failed() {
			os.RemoveAll(root)
		} else {
			t.Logf("kept %s", root)
		}
	})
	return w
}

// writeConfig writes dev (1 replica, smoke-tested if asked) → staging (from dev,
// 1 replica) → prod (2 replicas, released from commits verified on
// staging), short polls and grace periods, notifications to the receiver.
func (w *world) writeConfig(addr map[string]string, smoke bool) {
	c := demo.Config(addr["dev"], addr["prod"])
	c.Repo.Poll = 300 * time.Millisecond
	var out []config.Environment
	for _, e := range c.Environments {
		e.Rollout.GracePeriod = 3 * time.Second
		e.Rollout.ReadyTimeout = 30 * time.Second
		switch e.Name {
		case "dev":
			e.Replicas, e.Rollout.MaxSurge = 1, 1
			if !smoke {
				e.Smoke.Command = ""
			}
			out = append(out, e)
			s := config.DefaultEnvironment("staging")
			s.From = "dev"
			s.Listen = addr["staging"]
			s.Replicas = 1
			s.Rollout.GracePeriod, s.Rollout.ReadyTimeout = 3*time.Second, 30*time.Second
			out = append(out, s)
		case "prod":
			e.Replicas = 2
			e.RequireVerifiedOn = "staging"
			e.Env = map[string]string{"CRASH_PROD": "1"} // see badRelease
			out = append(out, e)
		}
	}
	c.Environments = out
	c.Release.Command = w.release
	var buf bytes.Buffer
	if err := config.Write(&buf, c); err != nil {
		w.t.Fatal(err)
	}
	buf.WriteString(w.hooks.config())
	if err := os.WriteFile(w.ws.Config, buf.Bytes(), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// startServe starts slipway serve and waits for its API.
func (w *world) startServe() {
	w.t.Helper()
	cmd := exec.Command(w.bin, w.args...)
	cmd.Env = append(os.Environ(), crashpoint.EnvAt+"=@"+w.crashAt, crashpoint.EnvRecord+"="+w.record,
		"CRASH_NOTIFY_SECRET="+receiverSecret)
	cmd.Env = append(cmd.Env, w.env...)
	w.serveOut = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = w.serveOut, w.serveOut
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.serve, w.serveDone = cmd, make(chan error, 1)
	go func() { w.serveDone <- cmd.Wait() }()
	w.waitFor("serve's API", func() bool {
		select {
		case err := <-w.serveDone:
			w.serveDone <- err
			w.t.Fatalf("serve stopped at start: %v\n%s", err, lastLines(w.serveOut.String(), 40))
		default:
		}
		_, err := api.NewClient(w.apiURL, "").Status(context.Background(), "")
		return err == nil
	})
	if w.token == "" {
		tok, err := os.ReadFile(filepath.Join(w.ws.DataDir, api.TokenFile))
		if err != nil {
			w.t.Fatal(err)
		}
		w.token = strings.TrimSpace(string(tok))
	}
}

// stopServe stops serve with SIGTERM.
func (w *world) stopServe() {
	w.serve.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.serveDone:
	case <-time.After(time.Minute):
		w.serve.Process.Kill()
		<-w.serveDone
	}
	w.serve = nil
}

// serveExited reports whether serve has exited, and how.
func (w *world) serveExited() (bool, error) {
	select {
	case err := <-w.serveDone:
		w.serveDone <- err
		return true, err
	default:
		return false, nil
	}
}

func (w *world) client() *api.Client { return api.NewClient(w.apiURL, w.token) }

func (w *world) waitFor(what string, cond func() bool) {
	w.t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			w.t.Fatalf("gave up waiting for %s after %s; serve's log:\n%s", what, deadline, w.serveLog())
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func (w *world) serveLog() string {
	if w.serveOut == nil {
		return ""
	}
	return lastLines(w.serveOut.String(), 60)
}

// status is the app's status; ok is false while the API does not answer.
func (w *world) status() (pipeline.Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := w.client().Status(ctx, "")
	return st, err == nil
}

func envOf(st pipeline.Status, name string) pipeline.EnvStatus {
	for _, e := range st.Environments {
		if e.Name == name {
			return e
		}
	}
	return pipeline.EnvStatus{}
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

// runs reports whether env runs commit, healthy, all replicas ready, with
// no rollout in flight.
func runs(st pipeline.Status, env, commit string) bool {
	e := envOf(st, env)
	return e.Commit != nil && *e.Commit == commit && e.Healthy && e.Rollout == nil &&
		e.Replicas.Ready == e.Replicas.Desired && e.Replicas.Desired > 0
}

// push commits a change of a file no test or build looks at (the Go caches
// answer at once) and pushes it to master.
func (w *world) push(msg string) string {
	w.t.Helper()
	f := filepath.Join(w.ws.Clone, "CHANGES")
	old, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(old, msg+"\n"...), 0o644); err != nil {
		w.t.Fatal(err)
	}
	git(w.t, w.ws.Clone, "add", "--all")
	git(w.t, w.ws.Clone, "commit", "-q", "-m", msg)
	git(w.t, w.ws.Clone, "push", "-q", "origin", "HEAD:master")
	return git(w.t, w.ws.Clone, "rev-parse", "HEAD")
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func version(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url + "/version")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		Commit string `json:"commit"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return ""
	}
	return v.Commit
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// load sends requests to an environment until stopped and counts the
// answers that are not 2xx.
type load struct {
	url        string
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(url string, workers int) *load {
	l := &load{url: url, stop: make(chan struct{})}
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			name := "loader" + string(rune('a'+i))
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				var err error
				var resp *http.Response
				if i%2 == 0 {
					req, _ := http.NewRequest("PUT", url+"/hello/"+name, strings.NewReader(`{"dateOfBirth":"2000-01-02"}`))
					resp, err = c.Do(req)
				} else {
					resp, err = c.Get(url + "/version")
				}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 300 {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
				} else {
					l.ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) end() (ok, failed int64, first any) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.firstErr.Load()
}

// receiver is a destination of notifications: it checks each one's
// signature and counts the deliveries of each id.
type receiver struct {
	t     *testing.T
	srv   *httptest.Server
	mu    sync.Mutex
	seen  map[string]int    // delivery id → deliveries
	kinds map[string]string // delivery id → "kind env commit"
}

const receiverSecret = "crash-secret"

func startReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, seen: map[string]int{}, kinds: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) config() string {
	return "notifications:\n  - name: crash\n    url: " + r.srv.URL + "/hook\n    secretEnv: CRASH_NOTIFY_SECRET\n"
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	id := req.Header.Get(notify.HeaderDelivery)
	if !notify.Verify([]byte(receiverSecret), body, req.Header.Get(notify.HeaderSignature)) {
		r.t.Errorf("notification %s: bad signature", id)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b notify.Body
	if err := json.Unmarshal(body, &b); err != nil {
		r.t.Errorf("notification %s: %v", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[id]++
	r.kinds[id] = b.Kind + " " + b.Env + " " + b.Commit
}

// has reports whether an event "kind env commit" arrived.
func (r *receiver) has(event string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.kinds {
		if k == event {
			return true
		}
	}
	return false
}

// resent returns the delivery ids that arrived more than once.
func (r *receiver) resent() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for id, n := range r.seen {
		if n > 1 {
			out[id] = r.kinds[id]
		}
	}
	return out
}
