package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// fakeController answers from fixed data: the API's own logic (routing,
// auth, error mapping, encoding) is what these tests check; test/e2e runs
// the API over the real controller.
type fakeController struct {
	released []pipeline.ReleaseRequest
}

var commit = strings.Repeat("ab", 20)

func (f *fakeController) Status(ctx context.Context) (pipeline.Status, error) {
	return pipeline.Status{Environments: []pipeline.EnvStatus{{Name: "dev", Commit: &commit}}, Pending: []pipeline.Commit{}}, nil
}

func (f *fakeController) History(ctx context.Context, env string, limit int) ([]ledger.Deployment, error) {
	if env == "qa" {
		return nil, pipeline.ErrUnknownEnv
	}
	return []ledger.Deployment{{ID: 1, Env: "dev", Commit: commit}}, nil
}

func (f *fakeController) Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error) {
	return nil, nil
}

func (f *fakeController) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	if id != 7 {
		return ledger.Deployment{}, ledger.ErrNoDeployment
	}
	return ledger.Deployment{ID: 7, State: ledger.StateSucceeded}, nil
}

func (f *fakeController) Release(ctx context.Context, req pipeline.ReleaseRequest) (ledger.Deployment, error) {
	f.released = append(f.released, req)
	if req.Commit == "old" {
		return ledger.Deployment{}, &pipeline.RefusedError{Env: "prod", Commit: "old", Reason: "not a fast-forward", Err: pipeline.ErrNotFastForward}
	}
	return ledger.Deployment{ID: 7, State: ledger.StatePending}, nil
}

func (f *fakeController) Rollback(ctx context.Context, target, trigger string) (ledger.Deployment, error) {
	return ledger.Deployment{}, pipeline.ErrBusy
}

func (f *fakeController) Scale(ctx context.Context, env string, n int) (ledger.Deployment, error) {
	return ledger.Deployment{}, errors.New("disk full")
}

func startServer(t *testing.T, ctl Controller) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ctl, nil, "secret", nil)
	go s.Serve(l)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return "http://" + l.Addr().String()
}

func TestClientServer(t *testing.T) {
	ctl := &fakeController{}
	base := startServer(t, ctl)
	ctx := context.Background()
	anon := NewClient(base, "")
	authed := NewClient(base, "secret")

	st, err := anon.Status(ctx)
	if err != nil || *st.Environments[0].Commit != commit {
		t.Errorf("anonymous status from loopback: %+v, %v", st, err)
	}
	if _, err := anon.Release(ctx, ReleaseRequest{}); code(err) != CodeUnauthorized {
		t.Errorf("release without token: %v, want unauthorized", err)
	}
	if _, err := NewClient(base, "wrong").Release(ctx, ReleaseRequest{}); code(err) != CodeUnauthorized {
		t.Errorf("release with a wrong token: %v, want unauthorized", err)
	}
	d, err := authed.Release(ctx, ReleaseRequest{Commit: "abc", Force: true, Reason: "hotfix"})
	if err != nil || d.ID != 7 {
		t.Fatalf("release: %+v, %v", d, err)
	}
	want := []pipeline.ReleaseRequest{{Commit: "abc", Force: true, Reason: "hotfix", Trigger: "release command"}}
	if diff := cmp.Diff(want, ctl.released); diff != "" {
		t.Errorf("release requests (-want +got):\n%s", diff)
	}
	d, err = authed.Wait(ctx, 7, nil)
	if err != nil || d.State != ledger.StateSucceeded {
		t.Errorf("wait: %+v, %v", d, err)
	}

	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"refused", func() error { _, err := authed.Release(ctx, ReleaseRequest{Commit: "old"}); return err }, CodeRefused},
		{"busy", func() error { _, err := authed.Rollback(ctx, ""); return err }, CodeConflict},
		{"unknown env", func() error { _, err := anon.History(ctx, "qa", 0); return err }, CodeNotFound},
		{"unknown deployment", func() error { _, err := anon.Deployment(ctx, 8); return err }, CodeNotFound},
		{"internal", func() error { _, err := authed.Scale(ctx, "prod", 2); return err }, CodeInternal},
		{"no logs", func() error { return anon.Logs(ctx, "dev", false, nil) }, CodeInvalid},
	}
	for _, tt := range tests {
		if got := code(tt.call()); got != tt.code {
			t.Errorf("%s: code %q, want %q", tt.name, got, tt.code)
		}
	}
	if _, err := NewClient("http://127.0.0.1:1", "").Status(ctx); !errors.Is(err, ErrUnreachable) {
		t.Errorf("status from nowhere: %v, want ErrUnreachable", err)
	}
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestReadsFromOutsideNeedToken(t *testing.T) {
	s := NewServer(&fakeController{}, nil, "secret", nil)
	for _, tt := range []struct {
		remote, token string
		want          int
	}{
		{"127.0.0.1:5555", "", http.StatusOK},
		{"[::1]:5555", "", http.StatusOK},
		{"192.0.2.1:5555", "", http.StatusUnauthorized},
		{"192.0.2.1:5555", "secret", http.StatusOK},
	} {
		req := httptest.NewRequest("GET", "/api/v1/status", nil)
		req.RemoteAddr = tt.remote
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != tt.want {
			t.Errorf("GET status from %s (token %q): %d, want %d", tt.remote, tt.token, w.Code, tt.want)
		}
	}
}

func TestLoadOrCreateToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, err := LoadOrCreateToken(dir)
	if err != nil || len(tok) != 64 {
		t.Fatalf("token %q, %v", tok, err)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi, err)
	}
	again, err := LoadOrCreateToken(dir)
	if err != nil || again != tok {
		t.Errorf("second load: %q, %v; want the same token", again, err)
	}
}

func TestMetrics(t *testing.T) {
	s := NewServer(&fakeController{}, nil, "secret", nil)
	s.EnableMetrics(nil)
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	body := w.Body.String()
	for _, want := range []string{
		`slipway_status_up 1`,
		`slipway_environment_info{commit="` + commit + `",digest="",env="dev",release=""} 1`,
		`slipway_environment_replicas_ready{env="dev"} 0`,
		`slipway_pending_commits 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}
