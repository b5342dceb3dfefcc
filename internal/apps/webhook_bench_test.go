package apps

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/registry"
	"slipway.dev/slipway/internal/testenv"
)

// BenchmarkPushWebhookToBuildRow measures how long a signed GitHub push
// webhook takes to start the build of the commit it names: from sending the
// request to the API until the build's ledger row exists. The repository is
// served over HTTP by git http-backend, as a forge's would be, and polled
// hourly, so only the webhook can start the build. The app takes its images
// from CI with a wait of a second: its build row is written at the same
// point as a Go build's (before anything is fetched, tested or compiled),
// and the build then ends quickly for the next round.
//
//	go test -run '^$' -bench PushWebhookToBuildRow -benchtime 20x ./internal/apps
func BenchmarkPushWebhookToBuildRow(b *testing.B) {
	testenv.LookPath(b, "git")
	ctx := context.Background()
	dir := b.TempDir()
	bare := filepath.Join(dir, "srv", "app.git")
	testenv.Git(b, dir, "init", "-q", "--bare", "-b", "master", bare)
	testenv.Git(b, bare, "config", "http.receivepack", "true")
	clone := filepath.Join(dir, "clone")
	testenv.Git(b, dir, "clone", "-q", bare, clone)
	testenv.Git(b, clone, "commit", "-q", "--allow-empty", "-m", "first")
	testenv.Git(b, clone, "push", "-q", "origin", "HEAD:master")

	gitPath, err := exec.LookPath("git")
	if err != nil {
		b.Fatal(err)
	}
	forge := httptest.NewServer(&cgi.Handler{Path: gitPath, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Join(dir, "srv"), "GIT_HTTP_EXPORT_ALL=1"}})
	defer forge.Close()

	reg, l, err := registry.Listen(ctx, "127.0.0.1:0", filepath.Join(dir, "registry"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close(ctx)
	const secret = "bench-secret"
	b.Setenv("BENCH_WEBHOOK_SECRET", secret)
	yaml := fmt.Sprintf(`app: web
repo: {url: %s/app.git, poll: 1h, webhookSecretEnv: BENCH_WEBHOOK_SECRET}
build: {kind: image, image: {wait: 1s}}
environments:
  - name: dev
    listen: 127.0.0.1:1
`, forge.URL)
	set, err := config.ParseSet("slipway.yaml", strings.NewReader(yaml))
	if err != nil {
		b.Fatal(err)
	}
	store, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	all, err := Open(ctx, Options{Set: set, DataDir: filepath.Join(dir, "data"), RegistryAddr: l.Addr().String(), Store: store})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- all.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	srv := api.NewServer(all, "token", nil)
	srv.EnableWebhooks(map[string][]byte{"web": []byte(secret)})
	hooks := httptest.NewServer(srv)
	defer hooks.Close()

	rowOf := func(commit string) (ledger.Build, bool) {
		row, err := store.LatestBuild(ctx, commit)
		return row, err == nil
	}
	first := testenv.Git(b, clone, "rev-parse", "HEAD")
	waitFor(b, "the first commit's build to end", func() bool {
		row, ok := rowOf(first)
		return ok && row.State == ledger.BuildFailed
	})
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		testenv.Git(b, clone, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("round %d", i))
		testenv.Git(b, clone, "push", "-q", "origin", "HEAD:master")
		commit := testenv.Git(b, clone, "rev-parse", "HEAD")
		body, _ := json.Marshal(map[string]any{"ref": "refs/heads/master", "after": commit,
			"repository": map[string]string{"clone_url": forge.URL + "/app.git"}})
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req, _ := http.NewRequest(http.MethodPost, hooks.URL+"/api/v1/webhooks/github", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		b.StartTimer()
		sent := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("webhook: %s", resp.Status)
		}
		var row ledger.Build
		waitFor(b, "the build row", func() bool {
			var ok bool
			row, ok = rowOf(commit)
			return ok
		})
		took = append(took, row.Created.Sub(sent))
		b.StopTimer()
		waitFor(b, "the build to end", func() bool {
			row, ok := rowOf(commit)
			return ok && row.State == ledger.BuildFailed
		})
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "ms-max")
	b.ReportMetric(float64(took[0].Microseconds())/1000, "ms-min")
	if os.Getenv("BENCH_VERBOSE") != "" {
		b.Logf("webhook → build row: %v", took)
	}
}

func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
