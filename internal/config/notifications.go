package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Notification formats: the body slipway posts to a destination.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

// NotificationEvents are the events a destination can ask for, in the
// order the documentation lists them.
var NotificationEvents = []string{
	"build.failed", "deployed", "deploy.failed", "verified", "released", "refused",
	"rolled_back", "auto_rollback", "locked", "unlocked", "break_glass",
}

// Notification is one outgoing webhook: slipway posts each event it asks
// for to URL, signed when SecretEnv is set, and tries again until the
// destination answers 2xx (at least 24 hours).
type Notification struct {
	// Name identifies the destination in slipway notifications and in the
	// ledger: 1-40 lowercase letters, digits and dashes. Required; unique
	// among an app's destinations and the file's top-level ones.
	Name string `yaml:"name"`
	// URL is where events are posted: http:// or https://. Required.
	URL string `yaml:"url"`
	// Format is the body: "json" (default), slipway's own, or "slack", a
	// Slack-compatible incoming-webhook message.
	Format string `yaml:"format,omitempty"`
	// Events are the events posted; empty: every event.
	Events []string `yaml:"events,omitempty"`
	// SecretEnv names the environment variable holding the secret the body
	// is signed with (Slipway-Signature: sha256=HMAC). Empty: unsigned.
	SecretEnv string `yaml:"secretEnv,omitempty"`
}

// Wants reports whether the destination asks for event.
func (n Notification) Wants(event string) bool {
	return len(n.Events) == 0 || slices.Contains(n.Events, event)
}

// FormatOrDefault is Format, or FormatJSON when it is empty.
func (n Notification) FormatOrDefault() string {
	if n.Format == "" {
		return FormatJSON
	}
	return n.Format
}

// Destinations returns the notifications of the app of the given name: the
// file's top-level ones (apps form), then the app's own.
func (s *Set) Destinations(app string) []Notification {
	out := slices.Clone(s.Notifications)
	if c, ok := s.App(app); ok {
		out = append(out, c.Notifications...)
	}
	return out
}

// notifications checks a list of destinations, field paths led by field
// (notifications). taken holds the names of destinations already seen
// (the top-level ones, for an app's); it is added to.
func (v *validator) notifications(field string, ns []Notification, taken map[string]string) {
	for i, n := range ns {
		p := field + "[" + strconv.Itoa(i) + "]"
		v.notification(p, n)
		if n.Name == "" {
			continue
		}
		if other, dup := taken[n.Name]; dup {
			v.add(p+".name", "%q is also the name of %s: give each destination its own name", n.Name, other)
			continue
		}
		taken[n.Name] = join(v.prefix, p)
	}
}

// notification checks one destination.
func (v *validator) notification(p string, n Notification) {
	switch {
	case n.Name == "":
		v.add(p+".name", "is required: a short name for the destination, such as team-chat")
	case !dnsLabel.MatchString(n.Name):
		v.add(p+".name", "%q is not a valid name: use 1-40 lowercase letters, digits and dashes, such as team-chat", n.Name)
	}
	v.notificationURL(p+".url", n.URL)
	switch n.Format {
	case "", FormatJSON, FormatSlack:
	default:
		v.add(p+".format", "%q is not a format: use json (slipway's own body) or slack (a Slack-compatible message)", n.Format)
	}
	for j, e := range n.Events {
		if slices.Contains(NotificationEvents, e) {
			continue
		}
		hint := ""
		if c := closest(e, NotificationEvents); c != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", c)
		}
		v.add(p+".events["+strconv.Itoa(j)+"]", "%q is not an event%s: use %s, or leave events out for every event", e, hint, strings.Join(NotificationEvents, ", "))
	}
	if n.SecretEnv != "" && !envName.MatchString(n.SecretEnv) {
		v.add(p+".secretEnv", "%q is not an environment variable name, such as SLIPWAY_NOTIFY_SECRET", n.SecretEnv)
	}
}

// notificationURL checks a destination's URL.
func (v *validator) notificationURL(p, raw string) {
	if raw == "" {
		v.add(p, "is required: where events are posted, such as https://hooks.example.com/slipway")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		v.add(p, "%q is not a URL: give one such as https://hooks.example.com/slipway", redactURL(raw))
	case u.Scheme != "http" && u.Scheme != "https":
		v.add(p, "%q: use an http:// or https:// URL", redactURL(raw))
	case u.Host == "":
		v.add(p, "%q names no host: give one such as https://hooks.example.com/slipway", redactURL(raw))
	}
}

// redactURL hides a URL's user information and query (webhook URLs often
// carry a token) for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?@"); i >= 0 {
			return raw[:i] + "…"
		}
		return raw
	}
	if u.User != nil {
		u.User = url.User("…")
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}

// globalClash reports an app's destinations named as one of the file's
// top-level destinations (taken: name → its field path).
func (v *validator) globalClash(ns []Notification, taken map[string]string) {
	for i, n := range ns {
		if other, dup := taken[n.Name]; dup && n.Name != "" {
			v.add("notifications["+strconv.Itoa(i)+"].name", "%q is also the name of %s, which every app has: give each destination its own name", n.Name, other)
		}
	}
}
