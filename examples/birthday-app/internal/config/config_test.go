package config

import (
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    Config
		wantErr string
	}{
		{name: "defaults", want: Default()},
		{
			name: "environment",
			env:  map[string]string{"PORT": "9000", "DATABASE_URL": "postgres://u:p@db/x", "TIME_ZONE": "Europe/Berlin", "SHUTDOWN_GRACE": "30s", "SHUTDOWN_DELAY": "5s", "HOST": "127.0.0.1"},
			want: Config{Host: "127.0.0.1", Port: 9000, DatabaseURL: "postgres://u:p@db/x", TimeZone: "Europe/Berlin", ShutdownGrace: 30 * time.Second, ShutdownDelay: 5 * time.Second, MigrateOnStart: true},
		},
		{
			name: "flags win over environment",
			env:  map[string]string{"PORT": "9000"},
			args: []string{"-port", "0", "-database-url", "sqlite:/tmp/x.db", "-shutdown-grace=1m"},
			want: Config{Port: 0, DatabaseURL: "sqlite:/tmp/x.db", TimeZone: "UTC", ShutdownGrace: time.Minute, MigrateOnStart: true},
		},
		{
			name: "migrations by a release phase",
			env:  map[string]string{"MIGRATE_ON_START": "false"},
			want: Config{Port: 8080, DatabaseURL: "sqlite:birthday.db", TimeZone: "UTC", ShutdownGrace: 10 * time.Second},
		},
		{
			name: "migrate-on-start flag wins",
			env:  map[string]string{"MIGRATE_ON_START": "false"},
			args: []string{"-migrate-on-start"},
			want: Default(),
		},
		{name: "bad migrate-on-start", env: map[string]string{"MIGRATE_ON_START": "sometimes"}, wantErr: `environment variable MIGRATE_ON_START="sometimes": "sometimes" is not true or false`},
		{name: "bad port in environment", env: map[string]string{"PORT": "http"}, wantErr: `environment variable PORT="http": "http" is not a whole number`},
		{name: "port out of range", args: []string{"-port", "70000"}, wantErr: "port 70000 is out of range: use 0 to 65535 (-port or PORT)"},
		{name: "unknown zone", args: []string{"-time-zone", "Mars/Olympus"}, wantErr: `time zone "Mars/Olympus" is unknown: use an IANA name such as UTC or Europe/Berlin (-time-zone or TIME_ZONE)`},
		{name: "zero grace", args: []string{"-shutdown-grace", "0s"}, wantErr: "shutdown grace 0s must be positive, e.g. 10s (-shutdown-grace or SHUTDOWN_GRACE)"},
		{name: "bad duration", env: map[string]string{"SHUTDOWN_GRACE": "10"}, wantErr: `environment variable SHUTDOWN_GRACE="10": "10" is not a duration such as 10s or 1m30s`},
		{name: "stray argument", args: []string{"serve"}, wantErr: `unexpected argument "serve": settings are flags such as -port 8080`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tt.wantErr, gotErr); diff != "" {
				t.Fatalf("error mismatch (-want +got):\n%s", diff)
			}
			if err == nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("config mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}
