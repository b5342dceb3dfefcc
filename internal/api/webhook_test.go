package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

type countPoller struct{ n atomic.Int32 }

func (c *countPoller) Poll() { c.n.Add(1) }

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestWebhooks(t *testing.T) {
	const secret, body = "s3cret", `{"ref":"refs/heads/master"}`
	p := &countPoller{}
	s := NewServer(&fakeController{}, nil, "token", nil)
	s.EnableWebhooks([]byte(secret), p)
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
			before := p.n.Load()
			req := httptest.NewRequest("POST", "/api/v1/webhooks/"+tt.provider, strings.NewReader(body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if polled := p.n.Load() > before; polled != tt.polls {
				t.Errorf("polled = %v, want %v", polled, tt.polls)
			}
		})
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
