//go:build integration

// Package browser drives the dashboard in a real browser (Debian's
// chromium, headless, through chromedp) against a real `slipway serve` of
// the demo workspace, with real pushes: the overview follows a push without
// a reload, a release made from the page rolls prod, a refused release
// shows its reason, and the token is asked for before any change.
//
//	go test -tags integration ./test/browser                          # the test
//	go test -tags integration ./test/browser -screenshots ../../docs/screenshots
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy/local"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/testenv"
)

var screenshots = flag.String("screenshots", "", "write screenshots of the main pages into this directory")

func TestMain(m *testing.M) {
	local.SupervisorMain()
	os.Exit(m.Run())
}

// deadline bounds each wait: builds take seconds to a minute or two on a
// busy machine.
const deadline = 5 * time.Minute

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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s after %s", what, deadline)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func status(t *testing.T, apiURL string) pipeline.Status {
	t.Helper()
	res, err := http.Get(apiURL + "/api/v1/status")
	if err != nil {
		return pipeline.Status{}
	}
	defer res.Body.Close()
	var st pipeline.Status
	json.NewDecoder(res.Body).Decode(&st)
	return st
}

func envOf(st pipeline.Status, name string) pipeline.EnvStatus {
	for _, e := range st.Environments {
		if e.Name == name {
			return e
		}
	}
	return pipeline.EnvStatus{}
}

func runs(st pipeline.Status, env, commit string) bool {
	e := envOf(st, env)
	return e.Commit != nil && *e.Commit == commit && e.Healthy && e.Rollout == nil
}

// serve runs `slipway serve` as a process of its own until the test ends.
func serve(t *testing.T, bin string, args []string, apiURL string) {
	t.Helper()
	var out bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(bin, args...)
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		err := <-done
		mu.Lock()
		defer mu.Unlock()
		lines := strings.Split(out.String(), "\n")
		t.Logf("serve (%v), the end of its log:\n%s", err, strings.Join(lines[max(0, len(lines)-30):], "\n"))
	})
	waitFor(t, "the API", func() bool {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v\n%s", err, out.String())
		default:
		}
		res, err := http.Get(apiURL + "/healthz")
		if err == nil {
			res.Body.Close()
		}
		return err == nil
	})
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ io.Writer = writerFunc(nil)

func TestDashboardInABrowser(t *testing.T) {
	testenv.LookPath(t, "git")
	testenv.LookPath(t, "go")
	chromium := testenv.LookPath(t, "chromium")

	short, err := os.MkdirTemp("", "sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	devAddr, prodAddr, apiAddr, regAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	apiURL := "http://" + apiAddr
	ws, err := demo.Prepare(context.Background(), demo.Options{Dir: filepath.Join(short, "demo"), DevAddr: devAddr, ProdAddr: prodAddr})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(short, "slipway")
	if out, err := exec.Command("go", "build", "-o", bin, "slipway.dev/slipway/cmd/slipway").CombinedOutput(); err != nil {
		t.Fatalf("build slipway: %v\n%s", err, out)
	}
	t.Cleanup(func() { stopEnvironments(t, ws.DataDir, demo.AppName, "dev", "prod") })
	serve(t, bin, []string{"serve", "--config", ws.Config, "--data-dir", ws.DataDir, "--api-addr", apiAddr, "--registry-addr", regAddr}, apiURL)
	tok, err := os.ReadFile(filepath.Join(ws.DataDir, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))

	c0 := git(t, ws.Bare, "rev-parse", "master")
	waitFor(t, "the first commit on prod", func() bool { return runs(status(t, apiURL), "prod", c0) })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser, and must not have a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Minute) }
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) bool {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		v, err := chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		if *screenshots == "" {
			return
		}
		sctx, cancel := step()
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(*screenshots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The overview shows what runs, and follows a push without a reload.
	run("open the overview", chromedp.Navigate(apiURL+"/"), chromedp.WaitVisible(chromedp.ID("overview")))
	eval(`window.notReloaded = true`)
	if got := text("#overview"); !strings.Contains(got, c0[:7]) {
		t.Fatalf("the overview does not show %s:\n%s", c0[:7], got)
	}
	subject := `Say hi <script>window.injected = true</script>`
	git(t, ws.Clone, "config", "user.name", `Eve <img src=x onerror="window.injected=true">`)
	out, err := exec.Command("sh", "-c", `cd "$0" && grep -rl 'Hello, ' --include='*.go' . | xargs sed -i 's/\([^A-Za-z]\)Hello, /\1Hi, /'`, ws.Clone).CombinedOutput()
	if err != nil {
		t.Fatalf("edit the greeting: %v\n%s", err, out)
	}
	git(t, ws.Clone, "commit", "-qam", subject)
	git(t, ws.Clone, "push", "-q", "origin", "HEAD:master")
	c1 := git(t, ws.Clone, "rev-parse", "HEAD")
	waitFor(t, "the overview to show the push on dev", func() bool {
		return strings.Contains(text("#overview"), c1[:7]) && runs(status(t, apiURL), "dev", c1)
	})
	// Once verified, the live overview shows it too (a second change).
	waitFor(t, "the overview to show dev healthy on the new commit", func() bool {
		return strings.Contains(text("#overview"), "Say hi <script>")
	})
	if !eval(`window.notReloaded === true`) {
		t.Error("the overview was reloaded to show the push")
	}
	if eval(`window.injected === true`) {
		t.Error("the commit's subject or author ran as script")
	}
	shot("overview")

	// A release from the page: the token is asked for first, then the
	// confirmation says what will happen, then prod rolls.
	run("open the pipeline", chromedp.Navigate(apiURL+"/apps/"+demo.AppName), chromedp.WaitVisible(chromedp.CSS(`form[action$="/release"] button`)))
	shot("pipeline")
	run("ask for a release", chromedp.Click(chromedp.CSS(`form[action$="/release"] button`)), chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)))
	sctx, scancel := step()
	loc, err := chromedp.Run(sctx, chromedp.Location())
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loc, "/login?next=") {
		t.Errorf("a release without a session goes to %s, want the sign-in page", loc)
	}
	shot("sign-in")
	run("sign in", chromedp.SendKeys(chromedp.CSS(`input[name=token]`), token), chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`ol.plan`)))
	plan := text("ol.plan")
	for _, want := range []string{"Release commit " + c1[:7], "Say hi <script>", "goes from RC", "to a new release"} {
		if !strings.Contains(plan, want) {
			t.Errorf("the confirmation does not say %q:\n%s", want, plan)
		}
	}
	shot("confirm-release")
	run("confirm", chromedp.Click(chromedp.CSS(`form.confirm button`)), chromedp.WaitVisible(chromedp.CSS(`dl.fields`)))
	waitFor(t, "prod to run the release", func() bool { return runs(status(t, apiURL), "prod", c1) })
	run("reload the deployment", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`dl.fields`)))
	if got := text("dl.fields"); !strings.Contains(got, "succeeded") || !strings.Contains(got, "release from the dashboard") {
		t.Errorf("the release's page says:\n%s", got)
	}
	shot("deployment")

	// A refused release shows the preflight's reason.
	run("release an older commit", chromedp.Navigate(fmt.Sprintf("%s/apps/%s/release?env=prod&commit=%s", apiURL, demo.AppName, c0)),
		chromedp.WaitVisible(chromedp.CSS(`form.confirm button`)), chromedp.Click(chromedp.CSS(`form.confirm button`)),
		chromedp.WaitVisible(chromedp.CSS(`p[role=alert]`)))
	if got := text("main"); !strings.Contains(got, "The release was refused") || !strings.Contains(got, "fast-forward") {
		t.Errorf("the refused release's page says:\n%s", got)
	}
	shot("refused")
	if !runs(status(t, apiURL), "prod", c1) {
		t.Error("a refused release changed prod")
	}

	run("open the history", chromedp.Navigate(apiURL+"/history"), chromedp.WaitVisible(chromedp.CSS("main table")))
	shot("history")
	// The DORA page counts the releases that went live: c0's and c1's.
	run("open the DORA metrics", chromedp.Navigate(apiURL+"/dora?window=7d"), chromedp.WaitVisible(chromedp.CSS("main table")))
	if got := text("main table"); !strings.Contains(got, "Deployment frequency") || !strings.Contains(got, "2 (") {
		t.Errorf("the DORA page says:\n%s", got)
	}
	shot("dora")
	run("phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(apiURL+"/"), chromedp.WaitVisible(chromedp.ID("overview")))
	shot("overview-phone")
}

// stopEnvironments stops the environments serve left running.
func stopEnvironments(t *testing.T, dataDir, app string, envs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := local.New(local.Options{Dir: filepath.Join(dataDir, "run", app), App: app, LegacyDir: filepath.Join(dataDir, "run")})
	if err != nil {
		t.Log(err)
		return
	}
	for _, env := range envs {
		if err := b.Stop(ctx, env); err != nil {
			t.Logf("stop %s: %v", env, err)
		}
	}
}
