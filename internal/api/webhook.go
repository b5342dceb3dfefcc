package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
)

// Poller is told to look at the repository now.
type Poller interface{ Poll() }

// maxWebhookBody bounds a webhook's body (GitHub sends at most 25 MB; a
// push's payload is far smaller).
const maxWebhookBody = 10 << 20

// Webhook providers, the last element of /api/v1/webhooks/{provider}.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
	ProviderGitea  = "gitea"
)

// Errors of signature checks.
var (
	ErrNoSignature  = errors.New("the request carries no signature")
	ErrBadSignature = errors.New("the signature does not match the secret")
	ErrProvider     = errors.New("unknown webhook provider: use github, gitlab or gitea")
)

// EnableWebhooks accepts push webhooks signed with secret at
// POST /api/v1/webhooks/{github,gitlab,gitea}; each valid push makes p poll.
// Webhooks need no API token: the signature is their authentication.
func (s *Server) EnableWebhooks(secret []byte, p Poller) {
	s.mux.HandleFunc("POST /api/v1/webhooks/{provider}", func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, func(w http.ResponseWriter, r *http.Request) error {
			return s.webhook(w, r, secret, p)
		})
	})
}

// WebhookAnswer is the answer to a webhook.
type WebhookAnswer struct {
	Status string `json:"status"` // "polling" or "ignored"
	Event  string `json:"event"`
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request, secret []byte, p Poller) error {
	provider := r.PathValue("provider")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil {
		return invalid("read webhook body: %v", err)
	}
	if len(body) > maxWebhookBody {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeInvalid, Message: "webhook body larger than 10 MiB"}
	}
	if err := VerifyWebhook(provider, r.Header, body, secret); err != nil {
		if errors.Is(err, ErrProvider) {
			return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
		}
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "webhook from " + provider + ": " + err.Error()}
	}
	event := webhookEvent(provider, r.Header)
	if !isPush(provider, event) {
		writeJSON(w, http.StatusOK, WebhookAnswer{Status: "ignored", Event: event})
		return nil
	}
	p.Poll()
	writeJSON(w, http.StatusAccepted, WebhookAnswer{Status: "polling", Event: event})
	return nil
}

// VerifyWebhook checks a webhook's signature: GitHub's X-Hub-Signature-256
// and Gitea's X-Gitea-Signature (HMAC-SHA256 of the body), GitLab's
// X-Gitlab-Token (the secret itself).
func VerifyWebhook(provider string, h http.Header, body, secret []byte) error {
	if len(secret) == 0 {
		return ErrBadSignature
	}
	switch provider {
	case ProviderGitHub:
		sig := h.Get("X-Hub-Signature-256")
		if sig == "" {
			return ErrNoSignature
		}
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		if !ok {
			return ErrBadSignature
		}
		return checkHMAC(hexSig, body, secret)
	case ProviderGitea:
		sig := h.Get("X-Gitea-Signature")
		if sig == "" {
			return ErrNoSignature
		}
		return checkHMAC(sig, body, secret)
	case ProviderGitLab:
		tok := h.Get("X-Gitlab-Token")
		if tok == "" {
			return ErrNoSignature
		}
		if subtle.ConstantTimeCompare([]byte(tok), secret) != 1 {
			return ErrBadSignature
		}
		return nil
	}
	return ErrProvider
}

func checkHMAC(hexSig string, body, secret []byte) error {
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrBadSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}

func webhookEvent(provider string, h http.Header) string {
	switch provider {
	case ProviderGitHub:
		return h.Get("X-GitHub-Event")
	case ProviderGitLab:
		return h.Get("X-Gitlab-Event")
	case ProviderGitea:
		return h.Get("X-Gitea-Event")
	}
	return ""
}

func isPush(provider, event string) bool {
	switch provider {
	case ProviderGitHub, ProviderGitea:
		return event == "push" || event == "create" || event == "delete"
	case ProviderGitLab:
		return event == "Push Hook" || event == "Tag Push Hook"
	}
	return false
}
