package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); go test -update rewrites it:\n%s", name, diff)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRenderStatus(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	c1, c2 := strings.Repeat("1a2b3c4d", 5), strings.Repeat("9f8e7d6c", 5)
	digest1 := "sha256:" + strings.Repeat("ab", 32)
	digest2 := "sha256:" + strings.Repeat("cd", 32)
	tests := []struct {
		name string
		st   pipeline.Status
	}{
		{"status-fresh.golden", pipeline.Status{
			Environments: []pipeline.EnvStatus{
				{Name: "dev", Branch: "master", URL: "http://127.0.0.1:8081",
					Rollout: &pipeline.Rollout{ID: 1, Kind: "deploy", Commit: c1, Step: "build"}},
				{Name: "prod", Branch: "release", URL: "http://127.0.0.1:8080"},
			},
		}},
		{"status-running.golden", pipeline.Status{
			Environments: []pipeline.EnvStatus{
				{Name: "dev", Branch: "master", Commit: &c2, ShortCommit: ptr(c2[:7]),
					Image: ptr("127.0.0.1:5000/birthday-app@" + digest2), Digest: &digest2,
					Replicas: pipeline.Replicas{Ready: 2, Desired: 2}, Healthy: true,
					Since: ptr(now.Add(-90 * time.Second)), URL: "http://127.0.0.1:8081", Isolation: ptr("namespaces+chroot")},
				{Name: "prod", Branch: "release", Commit: &c1, ShortCommit: ptr(c1[:7]), Release: ptr("RC20261127_0930"),
					Image: ptr("127.0.0.1:5000/birthday-app@" + digest1), Digest: &digest1,
					Replicas: pipeline.Replicas{Ready: 3, Desired: 4}, Healthy: true,
					Since: ptr(now.Add(-30 * time.Minute)), URL: "http://127.0.0.1:8080",
					LastFailure: ptr("release of 9f8e7d6 refused at 2026-11-27T09:50:00Z: 9f8e7d6 is not a fast-forward of the current release"),
					Isolation:   ptr("namespaces+chroot"),
					Message:     ptr("replica prod-1a2b3-4 is crash-looping (5 restarts): exit status 2")},
			},
			Pending: []pipeline.Commit{{Hash: c2, Short: c2[:7], Subject: "Say hi"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := renderStatus(&buf, tt.st, now); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, buf.Bytes())
		})
	}
}

func TestDemoNextSteps(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ws := demo.Workspace{Dir: filepath.Join(wd, "slipway-demo"), Clone: filepath.Join(wd, "slipway-demo", "app")}
	var buf bytes.Buffer
	printNextSteps(&buf, ws, "http://127.0.0.1:8400", demoOptions{devAddr: "127.0.0.1:8081", prodAddr: ":8080"}, true)
	golden(t, "demo-next-steps.golden", buf.Bytes())
}

func TestRenderHistory(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	c1, c2 := strings.Repeat("1a2b3c4d", 5), strings.Repeat("9f8e7d6c", 5)
	d1, d2 := "sha256:"+strings.Repeat("ab", 32), "sha256:"+strings.Repeat("cd", 32)
	h := api.History{
		Deployments: []ledger.Deployment{
			{ID: 4, Env: "prod", Kind: ledger.KindRelease, Trigger: "release command", Commit: c2, Digest: d2, ReleaseName: "RC20261127_0930",
				State: ledger.StateRolledBack, Reason: "prod did not become healthy: replica 1 exited\nmore; rolled back to RC20261127_0900", CreatedAt: t0.Add(30 * time.Minute)},
			{ID: 3, Env: "dev", Kind: ledger.KindDeploy, Trigger: "push to master", Commit: c2, Digest: d2, State: ledger.StateSucceeded, CreatedAt: t0.Add(20 * time.Minute),
				Schema: ledger.Schema{Known: true, Version: 3, Floor: 2, FloorBy: "0003_drop_date_of_birth"}},
			{ID: 2, Env: "prod", Kind: ledger.KindRelease, Trigger: "release command", Commit: c1, Digest: d1, ReleaseName: "RC20261127_0900",
				State: ledger.StateSucceeded, Forced: true, ForceReason: "hotfix", Note: "finished after restart", CreatedAt: t0,
				Schema: ledger.Schema{Known: true, Version: 2}},
		},
		Builds: []ledger.Build{
			{ID: 2, Commit: c2, State: ledger.BuildPushed, Digest: d2, Trigger: "controller", Created: t0.Add(19 * time.Minute)},
			{ID: 1, Commit: c1, State: ledger.BuildFailed, Reason: "tests failed (exit status 1)", Trigger: "cli", Created: t0.Add(-time.Hour)},
		},
	}
	var buf bytes.Buffer
	if err := renderHistory(&buf, h, 50); err != nil {
		t.Fatal(err)
	}
	golden(t, "history.golden", buf.Bytes())
}

func TestStagingConfig(t *testing.T) {
	b, err := stagingConfig("127.0.0.1:8081", "127.0.0.1:8082", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		App          string `yaml:"app"`
		Environments []struct {
			Name, Branch, From, Mode, Listen string
			RequireVerifiedOn                string `yaml:"requireVerifiedOn"`
			Replicas                         int
		} `yaml:"environments"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	var got []string
	for _, e := range doc.Environments {
		got = append(got, fmt.Sprintf("%s branch=%q from=%q mode=%s verifiedOn=%q listen=%s replicas=%d",
			e.Name, e.Branch, e.From, e.Mode, e.RequireVerifiedOn, e.Listen, e.Replicas))
	}
	want := []string{
		`dev branch="master" from="" mode=automatic verifiedOn="" listen=127.0.0.1:8081 replicas=2`,
		`staging branch="" from="dev" mode=automatic verifiedOn="" listen=127.0.0.1:8082 replicas=1`,
		`prod branch="release" from="" mode=controlled verifiedOn="staging" listen=:8080 replicas=4`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("staging demo's environments (-want +got):\n%s", diff)
	}

	// The configuration slipway reads must take it as it is.
	cfg, err := config.Parse("slipway.yaml", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
}

func TestDemoNextStepsStaging(t *testing.T) {
	ws := demo.Workspace{Dir: "/tmp/slipway-demo", Clone: "/tmp/slipway-demo/app"}
	var buf bytes.Buffer
	printNextSteps(&buf, ws, "http://127.0.0.1:8400", demoOptions{devAddr: "127.0.0.1:8081", prodAddr: ":8080", staging: true, stagingAddr: "127.0.0.1:8082"}, false)
	if want := "dev on http://127.0.0.1:8081, staging on http://127.0.0.1:8082, prod on http://127.0.0.1:8080,"; !strings.Contains(buf.String(), want) {
		t.Errorf("next steps lack %q:\n%s", want, buf.String())
	}
}

func TestStatusNotesOutOfMemory(t *testing.T) {
	st := pipeline.Status{App: "birthday-app", Environments: []pipeline.EnvStatus{{Name: "dev", Instances: []deploy.Replica{
		{Name: "dev-ab12c-1", Restarts: 1, LastExit: "killed: out of memory (limit 64 MiB)"},
		{Name: "dev-ab12c-2", Restarts: 2, LastExit: "exit status 1"},
	}}}}
	got := envNotes(st, "")
	want := []string{"dev: replica dev-ab12c-1 was killed: out of memory (limit 64 MiB); restarted (1 restarts)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
}
