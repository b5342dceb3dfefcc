//go:build integration

package kube

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/slipway/internal/testenv"
)

// Logs reads the output of the environment's pods; with follow, it also
// takes up pods that start later. The test cluster gives every container
// the output of pods.log next to its kubeconfig (scripts/testcluster), so
// the test appends lines to it with a mark of its own.
func TestLogs(t *testing.T) {
	ctx := t.Context()
	kubeconfig := testenv.Env(t, "KUBECONFIG", "Kubernetes cluster (scripts/testcluster up prints its kubeconfig)")
	podsLog := filepath.Join(filepath.Dir(kubeconfig), "pods.log")
	if _, err := os.Stat(podsLog); err != nil {
		t.Fatalf("the test cluster serves no container output (scripts/testcluster up writes %s): %v", podsLog, err)
	}
	app := testApp(t)
	b := newBackend(t, testConfig(app))
	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), fakeRelease("v1"), 1)); err != nil {
		t.Fatal(err)
	}
	appendLine(t, podsLog, app+" one")
	var all strings.Builder
	if err := b.Logs(ctx, "dev", false, &all); err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if pods := podsSaying(all.String(), app+" one"); len(pods) != 1 {
		t.Fatalf("Logs of 1 replica: %d pods said %q, want 1:\n%s", len(pods), app+" one", all.String())
	}

	followCtx, stop := context.WithCancel(ctx)
	var out lockedBuilder
	done := make(chan error, 1)
	go func() { done <- b.Logs(followCtx, "dev", true, &out) }()
	waitFor(t, "the followed pod's line", func() bool { return len(podsSaying(out.String(), app+" one")) == 1 })
	// A pod that starts after the stream began is taken up too.
	if err := b.Apply(ctx, withRelease(baseSpec(app, "dev"), fakeRelease("v1"), 2)); err != nil {
		t.Fatal(err)
	}
	appendLine(t, podsLog, app+" two")
	waitFor(t, "both pods' lines, the new pod's included", func() bool { return len(podsSaying(out.String(), app+" two")) == 2 })
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Logs(follow) after its context ended = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs(follow) did not return after its context ended")
	}
	t.Logf("followed:\n%s", out.String())
}

// appendLine adds a line of output to the test cluster's pods.log, in the
// container runtime's log format (time, stream, "F" for a full line, text).
func appendLine(t *testing.T, path, line string) {
	t.Helper()
	line = time.Now().UTC().Format(time.RFC3339Nano) + " stdout F " + line
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

var podLine = regexp.MustCompile(`(?m)^\[([^\]]+)\] (.*)$`)

// podsSaying returns the pods that wrote text as a line of out.
func podsSaying(out, text string) map[string]bool {
	pods := map[string]bool{}
	for _, m := range podLine.FindAllStringSubmatch(out, -1) {
		if m[2] == text {
			pods[m[1]] = true
		}
	}
	return pods
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
