package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzRequests sends arbitrary methods, paths, query strings and bodies to
// every route: the API never panics, never answers 500 for bad input, and
// every error is the documented JSON shape.
func FuzzRequests(f *testing.F) {
	for _, seed := range []struct{ method, path, body string }{
		{"GET", "/api/v1/status", ""},
		{"GET", "/api/v1/apps/web/status", ""},
		{"GET", "/api/v1/history?env=prod&limit=5", ""},
		{"GET", "/api/v1/history?limit=-1&since=x", ""},
		{"GET", "/api/v1/diff?from=dev&to=prod", ""},
		{"GET", "/api/v1/deployments/12", ""},
		{"GET", "/api/v1/deployments/99999999999999999999", ""},
		{"GET", "/api/v1/logs/..%2f..%2fetc", ""},
		{"GET", "/api/v1/builds?limit=3", ""},
		{"GET", "/api/v1/builds/" + commit + "/log?follow=1", ""},
		{"GET", "/api/v1/dora?days=30", ""},
		{"POST", "/api/v1/releases", `{"env":"prod","commit":"abc","force":true,"reason":"x"}`},
		{"POST", "/api/v1/releases", `{"env":1}`},
		{"POST", "/api/v1/rollbacks", `{"env":"prod","to":"RC20260101_0000"}`},
		{"POST", "/api/v1/scale", `{"env":"prod","replicas":-3}`},
		{"POST", "/api/v1/scale", `{"env":"prod","replicas":1e99}`},
		{"POST", "/api/v1/apps/web/environments/dev/stop", ""},
		{"POST", "/api/v1/apps/nope/environments/dev/start", ""},
		{"POST", "/api/v1/remove", `{"app":"old","env":"","deleteDatabase":true}`},
		{"POST", "/api/v1/releases", `[`},
		{"GET", "/api/ HTTP/1.0", ""},
		{"POST", "/api/v1/releases", strings.Repeat(`{"a":`, 1000)},
	} {
		f.Add(seed.method, seed.path, seed.body)
	}
	app := newFakeApp("web")
	s := NewServer(&fakeApps{apps: []*fakeApp{app}}, "secret", nil)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/api/") || len(body) > 1<<16 {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || !validMethod(method) {
			return
		}
		// What reaches a handler is what net/http parsed from a request
		// line: a target it cannot parse (a space, a control character) is
		// refused by the server before any route sees it.
		line := method + " " + u.RequestURI() + " HTTP/1.1\r\nHost: 127.0.0.1:8400\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line)))
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader([]byte(body)))
		r.ContentLength = int64(len(body))
		// A followed log ends with the request.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r = r.WithContext(ctx)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Authorization", "Bearer secret")
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		// The fake's Scale always fails as a broken disk would: that 500 is
		// the fake's, not the API's.
		scripted := strings.Contains(w.Body.String(), `"disk full"`)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable && !scripted {
			t.Fatalf("%s %s %.200q: %d %s", method, target, body, w.Code, w.Body)
		}
		if w.Code >= 400 && w.Code != http.StatusMethodNotAllowed && w.Code != http.StatusNotFound {
			var e Error
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Message == "" || e.Code == "" {
				t.Fatalf("%s %s %.200q: %d with a body that is not an API error: %.300q", method, target, body, w.Code, w.Body)
			}
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD":
		return true
	}
	return false
}
