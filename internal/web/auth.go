package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"

	"slipway.dev/slipway/internal/api"
)

// The session cookie holds a random nonce and its MAC under the API token,
// never the token itself: changing the token signs every browser out.
const (
	sessionCookie = "slipway_session"
	csrfField     = "csrf"
)

func (h *Handler) mac(purpose, nonce string) string {
	m := hmac.New(sha256.New, []byte(h.o.Token))
	m.Write([]byte("slipway-web\x00" + purpose + "\x00" + nonce))
	return hex.EncodeToString(m.Sum(nil))
}

// session returns the nonce of the request's session, if it has a valid
// one.
func (h *Handler) session(r *http.Request) (string, bool) {
	if h.o.Token == "" {
		return "", false
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	nonce, sum, ok := strings.Cut(c.Value, ".")
	if !ok || len(nonce) != 32 {
		return "", false
	}
	if !hmac.Equal([]byte(sum), []byte(h.mac("session", nonce))) {
		return "", false
	}
	return nonce, true
}

// csrfToken is the form token of the session nonce.
func (h *Handler) csrfToken(nonce string) string { return h.mac("csrf", nonce)[:32] }

func (h *Handler) bearer(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && h.o.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(h.o.Token)) == 1
}

// sameOrigin reports whether a browser sent r from one of the dashboard's
// own pages: the Origin header (or, without it, Sec-Fetch-Site, then the
// Referer) must name this host. A request with none of them is not from a
// browser's cross-site form or script.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	if sf := r.Header.Get("Sec-Fetch-Site"); sf != "" {
		return sf == "same-origin" || sf == "none"
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	return true
}

// read serves loopback clients freely; others need a session or the token.
func (h *Handler) read(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if api.Loopback(r) || h.bearer(r) {
			next(w, r)
			return
		}
		if _, ok := h.session(r); ok {
			next(w, r)
			return
		}
		if r.URL.Path == "/events" || strings.HasSuffix(r.URL.Path, "/log") {
			http.Error(w, "sign in with the API token first", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	}
}

// plainRefused answers, and reports true, when r may not sign in or change
// anything whatever its credentials: a plain-HTTP request from another
// machine would carry the token or the session in clear.
func (h *Handler) plainRefused(w http.ResponseWriter, r *http.Request) bool {
	if h.o.AllowPlainWrites || r.TLS != nil || api.Loopback(r) {
		return false
	}
	h.fail(w, r, http.StatusForbidden, "Refused",
		"Signing in and changes from another machine over plain HTTP are refused, as they would send the API token in clear: "+
			"reach the dashboard through a TLS proxy on the controller's machine, or start slipway serve with --api-allow-plain-writes.")
	return true
}

// write needs a session, the session's form token, and a request from the
// dashboard's own pages.
func (h *Handler) write(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
		if h.plainRefused(w, r) {
			return
		}
		if !sameOrigin(r) {
			h.fail(w, r, http.StatusForbidden, "Refused", "This change was sent from another site; make it from the dashboard's own page.")
			return
		}
		nonce, ok := h.session(r)
		if !ok {
			h.render(w, http.StatusUnauthorized, "login", h.newPage(r, "Sign in", "", loginData{Next: refererPath(r), Message: "Changes need the API token. Sign in, then make the change again."}))
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(h.csrfToken(nonce))) != 1 {
			h.fail(w, r, http.StatusForbidden, "Refused", "This form has expired or did not come from this dashboard: open the page again and resend it.")
			return
		}
		next(w, r)
	}
}

// refererPath is the local path of the page that sent r, or "/".
func refererPath(r *http.Request) string {
	if u, err := url.Parse(r.Referer()); err == nil && strings.EqualFold(u.Host, r.Host) {
		return localPath(u.RequestURI())
	}
	return "/"
}

// localPath returns p if it is a path on this site, else "/".
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	return p
}

type loginData struct {
	Next    string
	Message string
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	h.render(w, http.StatusOK, "login", h.newPage(r, "Sign in", "", loginData{Next: next}))
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	next := localPath(r.PostFormValue("next"))
	if h.plainRefused(w, r) {
		return
	}
	if !sameOrigin(r) {
		h.fail(w, r, http.StatusForbidden, "Refused", "Sign in from the dashboard's own page.")
		return
	}
	got := strings.TrimSpace(r.PostFormValue("token"))
	if h.o.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(h.o.Token)) != 1 {
		h.render(w, http.StatusUnauthorized, "login", h.newPage(r, "Sign in", "", loginData{Next: next,
			Message: "That is not the API token. It is in the controller's data directory, in the file api-token."}))
		return
	}
	raw := make([]byte, 16)
	rand.Read(raw)
	nonce := hex.EncodeToString(raw)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: nonce + "." + h.mac("session", nonce), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: 30 * 24 * 3600,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		h.fail(w, r, http.StatusForbidden, "Refused", "Sign out from the dashboard's own page.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
