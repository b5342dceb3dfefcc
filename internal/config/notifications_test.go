package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNotificationsParse(t *testing.T) {
	const file = `notifications:
  - name: chat
    url: https://hooks.example.com/T/B/x
    format: slack
    events: [released, auto_rollback]
apps:
  - app: web
    repo: {url: /srv/web.git}
    notifications:
      - name: audit
        url: http://127.0.0.1:9000/hook
        secretEnv: AUDIT_SECRET
  - app: api
    repo: {url: /srv/api.git}
    environments:
      - {name: dev, listen: "127.0.0.1:9081"}
      - {name: prod, listen: "127.0.0.1:9080"}
`
	s, err := ParseSet("f.yaml", strings.NewReader(strings.Replace(file, "repo: {url: /srv/web.git}\n", "repo: {url: /srv/web.git}\n    environments:\n      - {name: dev, listen: \"127.0.0.1:8081\"}\n      - {name: prod, listen: \"127.0.0.1:8080\"}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range s.Destinations("web") {
		got = append(got, n.Name+" "+n.FormatOrDefault())
	}
	if diff := cmp.Diff([]string{"chat slack", "audit json"}, got); diff != "" {
		t.Errorf("Destinations(web) (-want +got):\n%s", diff)
	}
	if d := s.Destinations("api"); len(d) != 1 || !d[0].Wants("released") || d[0].Wants("deployed") {
		t.Errorf("Destinations(api) = %+v, want chat, for released and not deployed", d)
	}
}

func TestNotificationsErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"notifications:\n  - url: https://h/x\n", "f.yaml:5: notifications[0].name: is required"},
		{"notifications:\n  - name: Chat\n    url: https://h/x\n", `f.yaml:5: notifications[0].name: "Chat" is not a valid name`},
		{"notifications:\n  - name: a\n", "f.yaml:5: notifications[0].url: is required"},
		{"notifications:\n  - name: a\n    url: ftp://h/x\n", `notifications[0].url: "ftp://h/x": use an http:// or https:// URL`},
		{"notifications:\n  - name: a\n    url: https://u:pw@h/x?token=s\n    format: xml\n", `notifications[0].format: "xml" is not a format`},
		{"notifications:\n  - name: a\n    url: https:///x?token=s\n", `notifications[0].url: "https:///x?…" names no host`},
		{"notifications:\n  - name: a\n    url: https://h/x\n    events: [deployed, deploy]\n", `f.yaml:7: notifications[0].events[1]: "deploy" is not an event`},
		{"notifications:\n  - name: a\n    url: https://h/x\n    events: [relased]\n", `notifications[0].events[0]: "relased" is not an event (did you mean "released"?)`},
		{"notifications:\n  - name: a\n    url: https://h/x\n    secretEnv: 1X\n", `notifications[0].secretEnv: "1X" is not an environment variable name`},
		{"notifications:\n  - name: a\n    url: https://h/x\n  - name: a\n    url: https://h/y\n", `notifications[1].name: "a" is also the name of notifications[0]`},
	} {
		_, err := ParseSet("f.yaml", strings.NewReader("app: demo\nrepo:\n  url: /srv/demo.git\n"+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

func TestNotificationsGlobalClash(t *testing.T) {
	const file = `notifications:
  - {name: chat, url: "https://h/x"}
apps:
  - app: web
    repo: {url: /srv/web.git}
    notifications:
      - {name: chat, url: "https://h/y"}
`
	_, err := ParseSet("f.yaml", strings.NewReader(file))
	const want = `f.yaml:7: apps[0].notifications[0].name: "chat" is also the name of notifications[0], which every app has`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
}
