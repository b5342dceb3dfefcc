package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestWebhooks(t *testing.T) {
	const secret, body = "s3cret", `{"ref":"refs/heads/master"}`
	app := newFakeApp("web")
	s := NewServer(&fakeApps{apps: []*fakeApp{app}}, "token", nil)
	s.EnableWebhooks(map[string][]byte{"web": []byte(secret)})
	tests := []struct {
		name     string
		provider string
		headers  map[string]string
		want     int
		polls    bool
	}{
		{"github push", "github", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(secret, body), "X-GitHub-Event": "push"}, http.StatusAccepted, true},
		{"github ping", "github", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(secret, body), "X-GitHub-Event": "ping"}, http.StatusOK, false},
		{"github wrong secret", "github", map[string]string{"X-Hub-Signature-256": "sha256=" + sign("other", body), "X-GitHub-Event": "push"}, http.StatusUnauthorized, false},
		{"github unsigned", "github", map[string]string{"X-GitHub-Event": "push"}, http.StatusUnauthorized, false},
		{"github sha1 only", "github", map[string]string{"X-Hub-Signature": "sha1=00", "X-GitHub-Event": "push"}, http.StatusUnauthorized, false},
		{"gitea push", "gitea", map[string]string{"X-Gitea-Signature": sign(secret, body), "X-Gitea-Event": "push"}, http.StatusAccepted, true},
		{"gitea bad hex", "gitea", map[string]string{"X-Gitea-Signature": "zz", "X-Gitea-Event": "push"}, http.StatusUnauthorized, false},
		{"gitlab push", "gitlab", map[string]string{"X-Gitlab-Token": secret, "X-Gitlab-Event": "Push Hook"}, http.StatusAccepted, true},
		{"gitlab wrong token", "gitlab", map[string]string{"X-Gitlab-Token": "nope", "X-Gitlab-Event": "Push Hook"}, http.StatusUnauthorized, false},
		{"unknown provider", "bitbucket", map[string]string{}, http.StatusNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := app.pollCount()
			w := postWebhook(s, "/api/v1/webhooks/"+tt.provider, body, tt.headers)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if polled := app.pollCount() > before; polled != tt.polls {
				t.Errorf("polled = %v, want %v", polled, tt.polls)
			}
		})
	}
}

func postWebhook(s *Server, path, body string, headers map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w
}

// TestWebhooksSeveralApps: a push goes to the app whose repository the
// payload names, signed with that app's secret.
func TestWebhooksSeveralApps(t *testing.T) {
	web, api, docs := newFakeApp("web"), newFakeApp("api"), newFakeApp("docs")
	api.repo = "git@gitlab.example:team/api.git"
	s := NewServer(&fakeApps{apps: []*fakeApp{web, api, docs}}, "token", nil)
	s.EnableWebhooks(map[string][]byte{"web": []byte("web-secret"), "api": []byte("api-secret")})
	github := func(secret, body string) map[string]string {
		return map[string]string{"X-Hub-Signature-256": "sha256=" + sign(secret, body), "X-GitHub-Event": "push"}
	}
	gitlab := map[string]string{"X-Gitlab-Token": "api-secret", "X-Gitlab-Event": "Push Hook"}
	tests := []struct {
		name    string
		path    string
		body    string
		headers map[string]string
		want    int
		polled  []*fakeApp
	}{
		{"github clone_url", "/api/v1/webhooks/github", `{"repository":{"clone_url":"https://github.com/example/web.git"}}`,
			github("web-secret", `{"repository":{"clone_url":"https://github.com/example/web.git"}}`), http.StatusAccepted, []*fakeApp{web}},
		{"github full_name", "/api/v1/webhooks/github", `{"repository":{"full_name":"Example/Web"}}`,
			github("web-secret", `{"repository":{"full_name":"Example/Web"}}`), http.StatusAccepted, []*fakeApp{web}},
		{"gitlab ssh url", "/api/v1/webhooks/gitlab", `{"project":{"git_ssh_url":"git@gitlab.example:team/api.git"}}`,
			gitlab, http.StatusAccepted, []*fakeApp{api}},
		{"signed with another app's secret", "/api/v1/webhooks/github", `{"repository":{"full_name":"example/web"}}`,
			github("api-secret", `{"repository":{"full_name":"example/web"}}`), http.StatusUnauthorized, nil},
		{"no app's repository", "/api/v1/webhooks/github", `{"repository":{"full_name":"example/other"}}`,
			github("web-secret", `{"repository":{"full_name":"example/other"}}`), http.StatusNotFound, nil},
		{"no repository in the payload", "/api/v1/webhooks/github", `{"ref":"refs/heads/master"}`,
			github("web-secret", `{"ref":"refs/heads/master"}`), http.StatusBadRequest, nil},
		{"app without a secret", "/api/v1/webhooks/github", `{"repository":{"full_name":"example/docs"}}`,
			github("web-secret", `{"repository":{"full_name":"example/docs"}}`), http.StatusUnauthorized, nil},
		{"scoped route", "/api/v1/apps/api/webhooks/github", `{}`, github("api-secret", `{}`), http.StatusAccepted, []*fakeApp{api}},
		{"scoped route, wrong secret", "/api/v1/apps/api/webhooks/github", `{}`, github("web-secret", `{}`), http.StatusUnauthorized, nil},
		{"scoped route, unknown app", "/api/v1/apps/nope/webhooks/github", `{}`, github("web-secret", `{}`), http.StatusNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[*fakeApp]int{web: web.pollCount(), api: api.pollCount(), docs: docs.pollCount()}
			w := postWebhook(s, tt.path, tt.body, tt.headers)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			for a, n := range before {
				if polled, want := a.pollCount() > n, slices.Contains(tt.polled, a); polled != want {
					t.Errorf("%s polled = %v, want %v", a.name, polled, want)
				}
			}
		})
	}
}

func TestNormalizeRepoURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://github.com/o/r.git", "github.com/o/r"},
		{"https://git@GitHub.com/o/r.git/", "github.com/o/r"},
		{"https://user:pass@github.com:443/o/r", "github.com/o/r"},
		{"git@github.com:o/r.git", "github.com/o/r"},
		{"github.com:o/r", "github.com/o/r"},
		{"ssh://git@github.com/o/r", "github.com/o/r"},
		{"git://github.com/o/r.git", "github.com/o/r"},
		{"file:///srv/git/app.git", "/srv/git/app"},
		{"/srv/git/app.git/", "/srv/git/app"},
		{"/srv/git/../git/App", "/srv/git/App"},
		{"", ""},
	} {
		if got := NormalizeRepoURL(tt.in); got != tt.want {
			t.Errorf("NormalizeRepoURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzVerifyWebhook(f *testing.F) {
	f.Add("github", "sha256="+sign("k", "body"), "body", "k")
	f.Add("gitea", sign("k", "body"), "body", "k")
	f.Add("gitlab", "k", "body", "k")
	f.Add("github", "sha256=", "", "")
	f.Fuzz(func(t *testing.T, provider, sig, body, secret string) {
		h := http.Header{}
		h.Set("X-Hub-Signature-256", sig)
		h.Set("X-Gitea-Signature", sig)
		h.Set("X-Gitlab-Token", sig)
		err := VerifyWebhook(provider, h, []byte(body), []byte(secret))
		if err == nil && secret == "" {
			t.Fatal("accepted a webhook with an empty secret")
		}
		if err == nil {
			// Whatever passed must be a correct signature for this body.
			want := map[string]string{"github": "sha256=" + sign(secret, body), "gitea": sign(secret, body), "gitlab": secret}[provider]
			if !strings.EqualFold(sig, want) {
				t.Fatalf("%s accepted signature %q for body %q, secret %q", provider, sig, body, secret)
			}
		}
		if err != nil && !errors.Is(err, ErrNoSignature) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrProvider) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// FuzzWebhookRepos feeds payloads and repository URLs to the routing of
// webhooks: it must not panic, and what NormalizeRepoURL returns ends in
// neither a slash nor .git, and names the same repository as its input.
func FuzzWebhookRepos(f *testing.F) {
	f.Add(`{"repository":{"clone_url":"https://github.com/o/r.git","full_name":"o/r"}}`, "git@github.com:o/r.git")
	f.Add(`{"project":{"git_ssh_url":"git@gitlab.example:team/api.git","path_with_namespace":"team/api"}}`, "https://gitlab.example/team/api")
	f.Add(`{"repository":null}`, "/srv/git/app.git/")
	f.Add(`[]`, "https://h/o/r.GIT")
	f.Fuzz(func(t *testing.T, payload, repo string) {
		for _, id := range payloadRepos([]byte(payload)) {
			repoMatches(repo, id)
		}
		n := NormalizeRepoURL(repo)
		if n != "" && (strings.HasSuffix(n, "/") || strings.HasSuffix(n, ".git")) {
			t.Fatalf("NormalizeRepoURL(%q) = %q ends in / or .git", repo, n)
		}
		if n != "" && !repoMatches(repo, repo) && !repoMatches(repo, n) {
			t.Fatalf("%q does not match itself (normalised %q)", repo, n)
		}
	})
}

// readRecorder is a body that records whether it was read.
type readRecorder struct {
	r    io.Reader
	read atomic.Bool
}

func (b *readRecorder) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

// A webhook that cannot be signed for any app is refused before its body
// is read; a body announced too large is refused unread.
func TestWebhookRefusedBeforeTheBody(t *testing.T) {
	a, b := newFakeApp("web"), newFakeApp("api")
	s := NewServer(&fakeApps{apps: []*fakeApp{a, b}}, "token", nil)
	s.EnableWebhooks(map[string][]byte{"web": []byte("s3cret")})
	tests := []struct {
		name, path string
		headers    map[string]string
		length     int64
		want       int
		says       string
	}{
		{"no signature", "/api/v1/webhooks/github", map[string]string{"X-GitHub-Event": "push"}, 10, http.StatusUnauthorized, "X-Hub-Signature-256"},
		{"app without a secret", "/api/v1/apps/api/webhooks/github", map[string]string{"X-Hub-Signature-256": "sha256=00"}, 10, http.StatusUnauthorized, "api takes no webhooks"},
		{"unknown app", "/api/v1/apps/nope/webhooks/gitea", map[string]string{"X-Gitea-Signature": "00"}, 10, http.StatusNotFound, "no app"},
		{"gitlab token of no app", "/api/v1/webhooks/gitlab", map[string]string{"X-Gitlab-Token": "guess"}, 10, http.StatusUnauthorized, "does not match"},
		{"too large", "/api/v1/apps/web/webhooks/github", map[string]string{"X-Hub-Signature-256": "sha256=00"}, maxWebhookBody + 1, http.StatusRequestEntityTooLarge, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &readRecorder{r: strings.NewReader(`{"ref":"refs/heads/master"}`)}
			req := httptest.NewRequest("POST", tt.path, body)
			req.ContentLength = tt.length
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.says) {
				t.Errorf("answer %d %s, want %d saying %q", w.Code, w.Body, tt.want, tt.says)
			}
			if body.read.Load() {
				t.Error("the body was read")
			}
		})
	}
}

// Bodies are read a few at a time and within a deadline: a slow sender is
// cut off, and while the slots are taken others are answered 503 at once.
func TestWebhookBodiesAreBounded(t *testing.T) {
	defer func(d time.Duration) { webhookReadTimeout = d }(webhookReadTimeout)
	webhookReadTimeout = 500 * time.Millisecond
	app := newFakeApp("web")
	s := NewServer(&fakeApps{apps: []*fakeApp{app}}, "token", nil)
	s.EnableWebhooks(map[string][]byte{"web": []byte("s3cret")})
	srv := httptest.NewServer(s)
	defer srv.Close()
	url := srv.URL + "/api/v1/webhooks/github"

	// maxWebhookReads senders that never finish their body.
	var writers []*io.PipeWriter
	answers := make(chan int, maxWebhookReads)
	for range maxWebhookReads {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		req, _ := http.NewRequest("POST", url, pr)
		req.Header.Set("X-Hub-Signature-256", "sha256=00")
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- 0
				return
			}
			resp.Body.Close()
			answers <- resp.StatusCode
		}()
		if _, err := pw.Write([]byte(`{"ref":`)); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, pw := range writers {
			pw.Close()
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); len(s.hookReads) < maxWebhookReads; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d slow bodies are being read", len(s.hookReads), maxWebhookReads)
		}
	}
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{}`))
	req.Header.Set("X-Hub-Signature-256", "sha256=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a webhook while every slot is taken: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for range maxWebhookReads {
		select {
		case code := <-answers:
			if code == http.StatusAccepted {
				t.Errorf("a body never finished was accepted")
			}
		case <-time.After(10 * webhookReadTimeout):
			t.Fatal("a sender that never finished its body was not cut off")
		}
	}
	if app.pollCount() != 0 {
		t.Error("an unsigned webhook made the app poll")
	}
	// The slots are free again.
	const body = `{"ref":"refs/heads/master"}`
	req, _ = http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign("s3cret", body))
	req.Header.Set("X-GitHub-Event", "push")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("a signed push after the slow ones: %d", resp.StatusCode)
	}
}

func TestWebhookNamesThePushedHead(t *testing.T) {
	const secret = "s3cret"
	head := strings.Repeat("ab", 20)
	app := newFakeApp("web")
	s := NewServer(&fakeApps{apps: []*fakeApp{app}}, "token", nil)
	s.EnableWebhooks(map[string][]byte{"web": []byte(secret)})
	for _, tt := range []struct {
		body string
		want []string
	}{
		{`{"ref":"refs/heads/master","after":"` + head + `"}`, []string{"master=" + head}},
		{`{"ref":"refs/tags/v1","after":"` + head + `"}`, nil},                                  // a tag: poll only
		{`{"ref":"refs/heads/master","after":"0000000000000000000000000000000000000000"}`, nil}, // deleted
		{`{"ref":"refs/heads/master"}`, nil},
	} {
		app.mu.Lock()
		app.pushed = nil
		app.mu.Unlock()
		w := postWebhook(s, "/api/v1/webhooks/github", tt.body, map[string]string{
			"X-Hub-Signature-256": "sha256=" + sign(secret, tt.body), "X-GitHub-Event": "push"})
		if w.Code != http.StatusAccepted {
			t.Fatalf("%s: status %d: %s", tt.body, w.Code, w.Body)
		}
		app.mu.Lock()
		got := app.pushed
		app.mu.Unlock()
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: pushed %q, want %q", tt.body, got, tt.want)
		}
	}
}
