package deploy

import (
	"context"
	"strings"
	"testing"
)

func TestRolloutProgress(t *testing.T) {
	spec := validSpec() // RC20260101_1200, 2 replicas
	old := strings.Repeat("f", 40)
	mine := func(state string, ready bool) Replica {
		return Replica{Version: spec.Version, Commit: spec.Commit, State: state, Ready: ready}
	}
	prev := func(state string, ready bool) Replica {
		return Replica{Version: "RC20251231_0900", Commit: old, State: state, Ready: ready}
	}
	tests := []struct {
		name     string
		replicas int
		in       []Replica
		want     string
	}{
		{"nothing yet", 2, nil, "0 of 2 replicas of RC20260101_1200 ready"},
		{"starting beside the old", 2, []Replica{mine("starting", false), prev("ready", true), prev("ready", true)},
			"0 of 2 replicas of RC20260101_1200 ready, 1 starting; 2 old serving"},
		{"half way", 2, []Replica{mine("ready", true), mine("starting", false), prev("draining", false), prev("ready", true)},
			"1 of 2 replicas of RC20260101_1200 ready, 1 starting; 1 old serving, 1 old draining"},
		{"a new one in trouble", 2, []Replica{mine("ready", true), mine("crash-looping", false), prev("ready", true)},
			"1 of 2 replicas of RC20260101_1200 ready, 1 crash-looping; 1 old serving"},
		{"done", 2, []Replica{mine("ready", true), mine("ready", true)}, "2 of 2 replicas of RC20260101_1200 ready"},
		{"scaling down", 1, []Replica{mine("ready", true), mine("draining", false)}, "1 of 1 replica of RC20260101_1200 ready, 1 draining"},
		{"stopping", 0, []Replica{mine("draining", false), mine("ready", true)}, "stopping: 1 draining, 1 serving"},
		{"stopped", 0, nil, "stopped: no replica left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec
			s.Replicas = tt.replicas
			if got := RolloutProgress(s, Status{Instances: tt.in}); got != tt.want {
				t.Errorf("RolloutProgress = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReportProgress(t *testing.T) {
	ctx := context.Background()
	if WantsProgress(ctx) {
		t.Error("a plain context wants progress")
	}
	ReportProgress(ctx, "nobody listens") // does nothing, does not panic
	var got []string
	ctx = WithProgress(ctx, func(msg string) { got = append(got, msg) })
	if !WantsProgress(ctx) {
		t.Error("a context WithProgress does not want progress")
	}
	ReportProgress(ctx, "1 of 2 ready")
	ReportProgress(ctx, "2 of 2 ready")
	if strings.Join(got, "|") != "1 of 2 ready|2 of 2 ready" {
		t.Errorf("reported %q", got)
	}
}
