package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// pageFiles are the pages; each is parsed with layout.html.
var pageFiles = []string{"overview", "app", "confirm", "deployment", "history", "diff", "dora", "login", "error"}

func (h *Handler) parse() error {
	funcs := template.FuncMap{
		"short":       short,
		"shortDigest": shortDigest,
		"ago":         func(t time.Time) string { return ago(h.o.Now(), t) },
		"ts":          timestamp,
		"iso":         func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"dur":         duration,
		"deref":       deref,
		"pct":         func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
		"fixed":       func(f float64) string { return fmt.Sprintf("%.2f", f) },
		"lower":       strings.ToLower,
		"slug":        func(s string) string { return strings.ReplaceAll(strings.ToLower(s), " ", "-") },
		"elapsed":     func(t time.Time) string { return duration(max(h.o.Now().Sub(t), 0)) },
		// A message of several lines (a release command's output) keeps them.
		"multiline": func(s string) bool { return strings.Contains(s, "\n") },
	}
	for _, name := range pageFiles {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("web: parse %s: %w", name, err)
		}
		h.pages[name] = t
	}
	h.frag = h.pages["overview"]
	return nil
}

func short(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

// shortDigest is sha256: and the first 12 hex digits.
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok {
		return short(d)
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return algo + ":" + hex
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how long ago t was, in the largest unit.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return duration(d) + " ago"
}

// duration rounds d for people: 42s, 3m 5s, 2h 10m, 3d 4h.
func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(math.Round(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}
