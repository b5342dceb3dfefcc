package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// Bounds on webhook bodies, which are read before their signature can be
// checked: a body is at most maxWebhookBody (a push's payload is tens of
// KiB; a larger one is refused and the next poll sees the push anyway),
// read within webhookReadTimeout, and at most maxWebhookReads bodies are
// read at once (others are answered 503 at once), so that unsigned
// requests cannot make the controller hold more than a few MiB.
const (
	maxWebhookBody  = 4 << 20
	maxWebhookReads = 4
)

var webhookReadTimeout = 10 * time.Second // a variable for tests

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

// EnableWebhooks accepts push webhooks at
// POST /api/v1/apps/{app}/webhooks/{github,gitlab,gitea}, and at
// POST /api/v1/webhooks/{github,gitlab,gitea}, which goes to the app whose
// repository the payload names (to the only app, when there is one). A
// push signed with the app's secret makes the app poll its repository.
// secrets maps app names to the secrets their forges sign with; an app
// without one takes no webhooks. Webhooks need no API token: the signature
// is their authentication.
func (s *Server) EnableWebhooks(secrets map[string][]byte) {
	s.hookReads = make(chan struct{}, maxWebhookReads)
	s.mux.HandleFunc("POST /api/v1/webhooks/{provider}", func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, func(w http.ResponseWriter, r *http.Request) error {
			return s.webhook(w, r, secrets, "")
		})
	})
	s.mux.HandleFunc("POST /api/v1/apps/{app}/webhooks/{provider}", func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, func(w http.ResponseWriter, r *http.Request) error {
			return s.webhook(w, r, secrets, r.PathValue("app"))
		})
	})
}

// WebhookAnswer is the answer to a webhook.
type WebhookAnswer struct {
	Status string   `json:"status"` // "polling" or "ignored"
	Event  string   `json:"event"`
	Apps   []string `json:"apps,omitempty"` // the apps that poll
}

// webhook serves a webhook for app, or, when app is "", for the apps the
// payload's repository names.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request, secrets map[string][]byte, app string) error {
	provider := r.PathValue("provider")
	if !knownProvider(provider) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: ErrProvider.Error()}
	}
	if err := s.checkBeforeBody(provider, r, secrets, app); err != nil {
		return err
	}
	select {
	case s.hookReads <- struct{}{}:
		defer func() { <-s.hookReads }()
	default:
		w.Header().Set("Retry-After", "1")
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeConflict,
			Message: fmt.Sprintf("%d webhooks are being read already: send it again later", maxWebhookReads)}
	}
	// A recorder in tests has no connection: no deadline to set.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(webhookReadTimeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil {
		return invalid("read the webhook's body within %s: %v", webhookReadTimeout, err)
	}
	if len(body) > maxWebhookBody {
		return tooLarge()
	}
	var candidates []App
	if app != "" {
		a, err := s.app(app)
		if err != nil {
			return err
		}
		candidates = []App{a}
	} else if candidates, err = s.webhookApps(body); err != nil {
		return err
	}
	// Only apps whose secret signed this body act on it.
	var signed []App
	for _, a := range candidates {
		if VerifyWebhook(provider, r.Header, body, secrets[a.Name()]) == nil {
			signed = append(signed, a)
		}
	}
	if len(signed) == 0 {
		first := candidates[0].Name()
		msg := first + " takes no webhooks: set repo.webhookSecretEnv in its configuration"
		if secret := secrets[first]; len(secret) > 0 {
			msg = VerifyWebhook(provider, r.Header, body, secret).Error()
		}
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "webhook from " + provider + ": " + msg}
	}
	event := webhookEvent(provider, r.Header)
	if !isPush(provider, event) {
		writeJSON(w, http.StatusOK, WebhookAnswer{Status: "ignored", Event: event})
		return nil
	}
	branch, commit := pushedHead(body)
	for _, a := range signed {
		if branch != "" {
			a.Pushed(branch, commit)
		} else {
			a.Poll()
		}
	}
	writeJSON(w, http.StatusAccepted, WebhookAnswer{Status: "polling", Event: event, Apps: appNames(signed)})
	return nil
}

// checkBeforeBody refuses, before a byte of the body is read, a webhook
// that cannot be signed for any app: no signature header, no app that takes
// webhooks, a GitLab token that is no app's secret, or a body announced
// larger than maxWebhookBody.
func (s *Server) checkBeforeBody(provider string, r *http.Request, secrets map[string][]byte, app string) error {
	unauthorized := func(msg string) error {
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "webhook from " + provider + ": " + msg}
	}
	if r.Header.Get(signatureHeader(provider)) == "" {
		return unauthorized(ErrNoSignature.Error() + " (" + signatureHeader(provider) + ")")
	}
	var keys [][]byte
	if app != "" {
		if _, err := s.app(app); err != nil {
			return err
		}
		if len(secrets[app]) == 0 {
			return unauthorized(app + " takes no webhooks: set repo.webhookSecretEnv in its configuration")
		}
		keys = [][]byte{secrets[app]}
	} else {
		for _, a := range s.apps.List() {
			if len(secrets[a.Name()]) > 0 {
				keys = append(keys, secrets[a.Name()])
			}
		}
		if len(keys) == 0 {
			return unauthorized("no app takes webhooks: set repo.webhookSecretEnv in an app's configuration")
		}
	}
	if provider == ProviderGitLab {
		// GitLab sends the secret itself: it is checked without the body.
		tok := []byte(r.Header.Get("X-Gitlab-Token"))
		if !slices.ContainsFunc(keys, func(k []byte) bool { return subtle.ConstantTimeCompare(tok, k) == 1 }) {
			return unauthorized(ErrBadSignature.Error())
		}
	}
	if r.ContentLength > maxWebhookBody {
		return tooLarge()
	}
	return nil
}

func tooLarge() error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeInvalid,
		Message: fmt.Sprintf("webhook body larger than %d MiB: a push's payload is far smaller", maxWebhookBody>>20)}
}

// signatureHeader is the header that authenticates provider's webhooks.
func signatureHeader(provider string) string {
	switch provider {
	case ProviderGitHub:
		return "X-Hub-Signature-256"
	case ProviderGitea:
		return "X-Gitea-Signature"
	default:
		return "X-Gitlab-Token"
	}
}

// webhookApps returns the apps whose repository the payload names; with
// one app, that app.
func (s *Server) webhookApps(body []byte) ([]App, error) {
	list := s.apps.List()
	switch len(list) {
	case 0:
		return nil, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this controller runs no app"}
	case 1:
		return list, nil
	}
	ids := payloadRepos(body)
	if len(ids) == 0 {
		return nil, invalid("the webhook's payload names no repository: point the webhook at /api/v1/apps/APP/webhooks/PROVIDER (apps: %s)", strings.Join(appNames(list), ", "))
	}
	var match []App
	for _, a := range list {
		if slices.ContainsFunc(ids, func(id string) bool { return repoMatches(a.RepoURL(), id) }) {
			match = append(match, a)
		}
	}
	if len(match) == 0 {
		return nil, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("no app's repository is %s: point the webhook at /api/v1/apps/APP/webhooks/PROVIDER (apps: %s)", ids[0], strings.Join(appNames(list), ", "))}
	}
	return match, nil
}

// payloadRepos returns the ways a push payload names its repository:
// GitHub's and Gitea's repository.{clone_url,html_url,ssh_url,git_url,url,
// full_name}, GitLab's project.{git_http_url,git_ssh_url,web_url,
// path_with_namespace} and repository.{git_http_url,git_ssh_url,homepage}.
func payloadRepos(body []byte) []string {
	type repo struct {
		CloneURL          string `json:"clone_url"`
		HTMLURL           string `json:"html_url"`
		SSHURL            string `json:"ssh_url"`
		GitURL            string `json:"git_url"`
		URL               string `json:"url"`
		FullName          string `json:"full_name"`
		GitHTTPURL        string `json:"git_http_url"`
		GitSSHURL         string `json:"git_ssh_url"`
		WebURL            string `json:"web_url"`
		Homepage          string `json:"homepage"`
		PathWithNamespace string `json:"path_with_namespace"`
	}
	var p struct {
		Repository repo `json:"repository"`
		Project    repo `json:"project"`
	}
	if json.Unmarshal(body, &p) != nil {
		return nil
	}
	var ids []string
	for _, r := range []repo{p.Repository, p.Project} {
		for _, id := range []string{r.CloneURL, r.GitHTTPURL, r.SSHURL, r.GitSSHURL, r.GitURL, r.HTMLURL, r.WebURL, r.Homepage, r.URL, r.FullName, r.PathWithNamespace} {
			if id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// repoMatches reports whether id (a URL, or a forge's OWNER/NAME) names the
// repository at repoURL.
func repoMatches(repoURL, id string) bool {
	want := NormalizeRepoURL(repoURL)
	if want == "" {
		return false
	}
	if NormalizeRepoURL(id) == want {
		return true
	}
	if !strings.Contains(id, ":") && !strings.HasPrefix(id, "/") && strings.Contains(id, "/") && !strings.Contains(strings.SplitN(id, "/", 2)[0], ".") {
		// OWNER/NAME: the end of the repository's path.
		return strings.HasSuffix(strings.ToLower(want), "/"+strings.ToLower(strings.TrimSuffix(id, ".git")))
	}
	return false
}

// NormalizeRepoURL reduces a repository URL to what identifies the
// repository, so that two ways of writing one repository compare equal:
// without scheme, user, port, trailing slash and .git suffix, host and path
// in lower case (https://git@GitHub.com/o/r.git/,
// git@github.com:o/r and ssh://github.com/o/r all give github.com/o/r). A
// local path is only cleaned (file:// removed).
func NormalizeRepoURL(raw string) string {
	s := strings.TrimSpace(raw)
	if s == "" {
		return ""
	}
	trim := func(p string) string {
		for {
			q := strings.TrimSuffix(strings.TrimSuffix(p, "/"), ".git")
			if q == p {
				return p
			}
			p = q
		}
	}
	if strings.HasPrefix(s, "file://") {
		return trim(path.Clean(strings.TrimPrefix(s, "file://")))
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return trim(strings.ToLower(s))
		}
		return trim(strings.ToLower(u.Hostname() + "/" + strings.TrimPrefix(u.Path, "/")))
	}
	// scp-like: [user@]host:path, with no slash before the colon.
	if i := strings.Index(s, ":"); i > 0 && !strings.Contains(s[:i], "/") {
		host := s[:i]
		if at := strings.LastIndex(host, "@"); at >= 0 {
			host = host[at+1:]
		}
		return trim(strings.ToLower(host + "/" + strings.TrimPrefix(s[i+1:], "/")))
	}
	return trim(path.Clean(s))
}

func knownProvider(p string) bool {
	return p == ProviderGitHub || p == ProviderGitLab || p == ProviderGitea
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

// pushedHead returns the branch a push payload moved and its new head
// (GitHub's, Gitea's and GitLab's "ref" and "after"); "" for a tag, a
// deleted branch or a payload without them.
func pushedHead(body []byte) (branch, commit string) {
	var p struct {
		Ref   string `json:"ref"`
		After string `json:"after"`
	}
	if json.Unmarshal(body, &p) != nil {
		return "", ""
	}
	branch, ok := strings.CutPrefix(p.Ref, "refs/heads/")
	if !ok || branch == "" || strings.Trim(p.After, "0") == "" {
		return "", ""
	}
	return branch, p.After
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
