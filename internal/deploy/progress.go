package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

type progressKey struct{}

// WithProgress returns a context that carries report: a backend's Apply
// given it calls report with a line for people each time the rollout moves
// on (replicas started, ready, old ones draining and stopped). report is
// called from the backend's goroutines, never after Apply returned, and
// must not block.
func WithProgress(ctx context.Context, report func(msg string)) context.Context {
	return context.WithValue(ctx, progressKey{}, report)
}

// ReportProgress hands msg to the report func ctx carries (WithProgress);
// without one it does nothing.
func ReportProgress(ctx context.Context, msg string) {
	if report, ok := ctx.Value(progressKey{}).(func(string)); ok && report != nil {
		report(msg)
	}
}

// WantsProgress reports whether ctx carries a report func, so that a
// backend watches its rollout only for a caller that listens.
func WantsProgress(ctx context.Context) bool {
	report, ok := ctx.Value(progressKey{}).(func(string))
	return ok && report != nil
}

// RolloutProgress describes where a rollout to spec stands from the
// environment's status, counting the replicas of spec's version (its
// commit and version) as its own and every other as old:
// "2 of 3 replicas of RC20261127_0930 ready, 1 starting; 1 old draining".
func RolloutProgress(spec Spec, st Status) string {
	type count struct{ ready, starting, draining, other int }
	var fresh, old count
	states := map[string]int{}
	for _, r := range st.Instances {
		c := &old
		if r.Commit == spec.Commit && r.Version == spec.Version {
			c = &fresh
		}
		switch {
		case r.State == "draining":
			c.draining++
		case r.Ready:
			c.ready++
		case r.State == "starting" || r.State == "":
			c.starting++
		default:
			c.other++
			if c == &fresh {
				states[r.State]++
			}
		}
	}
	var b strings.Builder
	if spec.Replicas == 0 {
		// Stopping: every replica goes, whatever its version.
		fresh.draining += old.draining
		fresh.ready += old.ready + old.starting + old.other
		if fresh.draining+fresh.ready == 0 {
			return "stopped: no replica left"
		}
		return fmt.Sprintf("stopping: %d draining, %d serving", fresh.draining, fresh.ready)
	}
	fmt.Fprintf(&b, "%d of %d %s of %s ready", fresh.ready, spec.Replicas, plural(spec.Replicas, "replica"), spec.Version)
	if fresh.starting > 0 {
		fmt.Fprintf(&b, ", %d starting", fresh.starting)
	}
	for _, s := range slices.Sorted(maps.Keys(states)) {
		fmt.Fprintf(&b, ", %d %s", states[s], s)
	}
	if fresh.draining > 0 {
		fmt.Fprintf(&b, ", %d draining", fresh.draining)
	}
	var olds []string
	if n := old.ready + old.starting + old.other; n > 0 {
		olds = append(olds, fmt.Sprintf("%d old serving", n))
	}
	if old.draining > 0 {
		olds = append(olds, fmt.Sprintf("%d old draining", old.draining))
	}
	if len(olds) > 0 {
		b.WriteString("; ")
		b.WriteString(strings.Join(olds, ", "))
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
