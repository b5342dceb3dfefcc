//go:build smoke

package smoke

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

var client = &http.Client{Timeout: 10 * time.Second}

func baseURL(t *testing.T) string {
	u := strings.TrimRight(os.Getenv("SLIPWAY_URL"), "/")
	if u == "" {
		t.Fatal("SLIPWAY_URL is not set: set it to the base URL of the deployment, e.g. SLIPWAY_URL=http://127.0.0.1:8080")
	}
	return u
}

// uniqueName returns letters only, different on every run.
func uniqueName() string {
	var b [12]byte
	rand.Read(b[:])
	name := []byte("Smoke")
	for _, c := range b {
		name = append(name, 'a'+c%26)
	}
	return string(name)
}

func call(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func expect(t *testing.T, method, url, body string, wantCode int) string {
	t.Helper()
	code, _, got := call(t, method, url, body)
	if code != wantCode {
		t.Fatalf("%s %s: status %d, want %d; body: %s", method, url, code, wantCode, got)
	}
	return got
}

func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error object", body)
	}
	return e.Error
}

func TestSmoke(t *testing.T) {
	base := baseURL(t)
	name := uniqueName()
	user := base + "/hello/" + name

	t.Run("ops", func(t *testing.T) {
		expect(t, "GET", base+"/healthz", "", 200)
		expect(t, "GET", base+"/readyz", "", 200)
		expect(t, "GET", base+"/statusz", "", 200)
		var v struct {
			Commit    string `json:"commit"`
			GoVersion string `json:"goVersion"`
		}
		body := expect(t, "GET", base+"/version", "", 200)
		if err := json.Unmarshal([]byte(body), &v); err != nil || v.Commit == "" || v.GoVersion == "" {
			t.Errorf("/version = %s, want JSON with commit and goVersion", body)
		}
		if want := os.Getenv("SLIPWAY_COMMIT"); want != "" && v.Commit != want {
			t.Errorf("/version commit = %q, want %q (SLIPWAY_COMMIT)", v.Commit, want)
		}
		if m := expect(t, "GET", base+"/metrics", "", 200); !strings.Contains(m, "birthday_http_requests_total") {
			t.Errorf("/metrics lacks birthday_http_requests_total")
		}
	})

	t.Run("put and get", func(t *testing.T) {
		greeting := regexp.MustCompile(`^Hello, ` + name + `! (Happy birthday!|Your birthday is in (1 day|([2-9]|[1-9][0-9]|[12][0-9][0-9]|3[0-5][0-9]|36[0-5]) days))$`)
		for _, born := range []string{"1990-07-14", "2000-02-29"} {
			expect(t, "PUT", user, `{"dateOfBirth":"`+born+`"}`, 204)
			var m struct {
				Message string `json:"message"`
			}
			body := expect(t, "GET", user, "", 200)
			if err := json.Unmarshal([]byte(body), &m); err != nil || !greeting.MatchString(m.Message) {
				t.Errorf("GET %s after saving %s = %s, want a greeting for %s", user, born, body, name)
			}
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		body := expect(t, "GET", user+"Nobody", "", 404)
		if got, want := errorOf(t, body), "user "+name+"Nobody not found"; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct{ url, body, field string }{
			{user, `{"dateOfBirth":"2001-02-29"}`, "dateOfBirth"},
			{user, `{"dateOfBirth":"2999-01-01"}`, "dateOfBirth"},
			{user, `{}`, "dateOfBirth"},
			{user, `not json`, "body"},
			{base + "/hello/" + name + "1", `{"dateOfBirth":"2000-01-01"}`, "username"},
		} {
			body := expect(t, "PUT", c.url, c.body, 400)
			if msg := errorOf(t, body); !strings.HasPrefix(msg, c.field+" ") {
				t.Errorf("PUT %s %s: error %q does not name %s", c.url, c.body, msg, c.field)
			}
		}
	})
}
