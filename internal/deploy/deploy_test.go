package deploy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func validSpec() Spec {
	return Spec{
		Environment: "prod", App: "birthday-app",
		Image:  "127.0.0.1:5000/birthday-app@sha256:" + strings.Repeat("ab", 32),
		Commit: strings.Repeat("0123456789", 4), Version: "RC20260101_1200", Replicas: 2, Port: 8080,
		ReadinessPath: "/readyz",
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Spec)
		want   string // in the error; "" for valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"environment upper case", func(s *Spec) { s.Environment = "Prod" }, `environment "Prod"`},
		{"image by tag", func(s *Spec) { s.Image = "127.0.0.1:5000/birthday-app:latest" }, "not pinned to a digest"},
		{"short commit", func(s *Spec) { s.Commit = "0123456" }, "full 40-hex commit"},
		{"stopped: no replicas", func(s *Spec) { s.Replicas = 0 }, ""},
		{"negative replicas", func(s *Spec) { s.Replicas = -1 }, "0 (stopped) or more"},
		{"relative readiness path", func(s *Spec) { s.ReadinessPath = "readyz" }, "must start with /"},
		{"bad env name", func(s *Spec) { s.Env = map[string]string{"A-B": "x"} }, `env "A-B"`},
		{"negative surge", func(s *Spec) { s.Strategy.MaxSurge = -1 }, "cannot be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.change(&s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidSpec saying %q", err, tt.want)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := Spec{}.WithDefaults()
	want := Spec{ReadinessPath: "/readyz", Strategy: Strategy{MaxSurge: 1, ReadyTimeout: time.Minute, TerminationGracePeriod: 10 * time.Second},
		Frontend: Frontend{MaxHeaderBytes: 1 << 20, HeaderTimeout: 10 * time.Second, BodyTimeout: time.Minute,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxConnections: 10000}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithDefaults (-want +got):\n%s", diff)
	}
	// maxUnavailable alone is a valid strategy: no surge is added.
	got = Spec{Strategy: Strategy{MaxUnavailable: 1}}.WithDefaults()
	if got.Strategy.MaxSurge != 0 || got.Strategy.MaxUnavailable != 1 {
		t.Errorf("WithDefaults kept %+v, want maxSurge 0, maxUnavailable 1", got.Strategy)
	}
	if d := validSpec().Digest(); d != "sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("Digest() = %q", d)
	}
}

func TestRolloutErrorMessage(t *testing.T) {
	err := &RolloutError{Environment: "prod", Version: "RC1", Replica: "prod-abc-3", Reason: "not ready within 1m0s",
		LastLogs: []string{"open database: connection refused"}}
	want := "roll out RC1 to prod: not ready within 1m0s (replica prod-abc-3); the previous version keeps serving; its last log lines:\n  open database: connection refused"
	if got := err.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}
