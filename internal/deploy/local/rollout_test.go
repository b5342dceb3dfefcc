package local

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/deploy"
)

func TestPlanRollout(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	clk.Advance(5 * time.Minute)
	now := clk.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }

	surge1 := deploy.Strategy{MaxSurge: 1, ReadyTimeout: time.Minute}
	surge2 := deploy.Strategy{MaxSurge: 2, ReadyTimeout: time.Minute}
	unavail1 := deploy.Strategy{MaxUnavailable: 1, ReadyTimeout: time.Minute}

	// Replicas of the revision being rolled out ("new") and of the one
	// serving before ("old").
	old := func(name string, ready bool) replicaView {
		return replicaView{name: name, revision: "old", ready: ready, everReady: true, created: t0, state: "ready"}
	}
	readyNew := func(name string, created time.Time) replicaView {
		return replicaView{name: name, revision: "new", ready: true, everReady: true, created: created, state: "ready"}
	}
	startingNew := func(name string, created time.Time) replicaView {
		return replicaView{name: name, revision: "new", created: created, state: "starting"}
	}
	draining := func(v replicaView) replicaView { v.draining = true; return v }

	tests := []struct {
		name     string
		n        int
		strategy deploy.Strategy
		replicas []replicaView
		want     rolloutPlan
	}{
		{
			name: "first deployment starts all it may", n: 2, strategy: surge1,
			want: rolloutPlan{start: 2, next: now.Add(time.Second)},
		},
		{
			name: "surge 1 starts one new beside the old", n: 2, strategy: surge1,
			replicas: []replicaView{old("o1", true), old("o2", true)},
			want:     rolloutPlan{start: 1, next: now.Add(time.Second)},
		},
		{
			name: "surge 2 starts two new beside the old", n: 2, strategy: surge2,
			replicas: []replicaView{old("o1", true), old("o2", true)},
			want:     rolloutPlan{start: 2, next: now.Add(time.Second)},
		},
		{
			name: "no start beyond the surge while the new one is not ready", n: 2, strategy: surge1,
			replicas: []replicaView{old("o1", true), old("o2", true), startingNew("n1", ago(10*time.Second))},
			want:     rolloutPlan{next: now.Add(time.Second)},
		},
		{
			name: "a ready new one lets an old one go and the next one start", n: 2, strategy: surge1,
			replicas: []replicaView{old("o1", true), old("o2", true), readyNew("n1", ago(time.Second))},
			want:     rolloutPlan{retire: []string{"o1"}, start: 1, next: now.Add(time.Second)},
		},
		{
			name: "unavailable 1 retires an old one before starting", n: 2, strategy: unavail1,
			replicas: []replicaView{old("o1", true), old("o2", true)},
			want:     rolloutPlan{retire: []string{"o1"}, start: 1, next: now.Add(time.Second)},
		},
		{
			name: "unavailable 1 keeps one ready while the new one starts", n: 2, strategy: unavail1,
			replicas: []replicaView{old("o2", true), startingNew("n1", ago(time.Second))},
			want:     rolloutPlan{next: now.Add(time.Second)},
		},
		{
			name: "unready old replicas are retired first, whatever the limits", n: 2, strategy: surge1,
			replicas: []replicaView{old("o1", true), old("o2", false), old("o3", true), readyNew("n1", ago(time.Second))},
			want:     rolloutPlan{retire: []string{"o2", "o1"}, start: 1, next: now.Add(time.Second)},
		},
		{
			name: "old replicas stay while too few would be ready", n: 3, strategy: surge1,
			replicas: []replicaView{old("o1", true), old("o2", false), old("o3", true), startingNew("n1", ago(time.Second))},
			want:     rolloutPlan{retire: []string{"o2"}, start: 1, next: now.Add(time.Second)},
		},
		{
			name: "last old replica goes once the new ones are ready", n: 2, strategy: surge1,
			replicas: []replicaView{old("o2", true), readyNew("n1", ago(2*time.Second)), readyNew("n2", ago(time.Second))},
			want:     rolloutPlan{retire: []string{"o2"}, next: now.Add(time.Second)},
		},
		{
			name: "done when every replica is new and ready", n: 2, strategy: surge1,
			replicas: []replicaView{readyNew("n1", ago(2*time.Second)), readyNew("n2", ago(time.Second))},
			want:     rolloutPlan{done: true},
		},
		{
			name: "draining replicas count for nothing", n: 2, strategy: surge1,
			replicas: []replicaView{draining(old("o1", true)), draining(old("o2", true)),
				readyNew("n1", ago(2*time.Second)), readyNew("n2", ago(time.Second))},
			want: rolloutPlan{done: true},
		},
		{
			name: "scale up starts the difference", n: 4, strategy: surge1,
			replicas: []replicaView{readyNew("n1", ago(2*time.Second)), readyNew("n2", ago(time.Second))},
			want:     rolloutPlan{start: 2, next: now.Add(time.Second)},
		},
		{
			name: "scale down retires the newest", n: 2, strategy: surge1,
			replicas: []replicaView{readyNew("n1", ago(4*time.Second)), readyNew("n2", ago(3*time.Second)),
				readyNew("n3", ago(2*time.Second)), readyNew("n4", ago(time.Second))},
			want: rolloutPlan{retire: []string{"n4", "n3"}, done: true},
		},
		{
			name: "scale down retires unready ones first", n: 2, strategy: surge1,
			replicas: []replicaView{readyNew("n1", ago(4*time.Second)), func() replicaView {
				v := readyNew("n2", ago(3*time.Second))
				v.ready, v.state = false, "unready"
				return v
			}(), readyNew("n3", ago(2*time.Second)), readyNew("n4", ago(time.Second))},
			want: rolloutPlan{retire: []string{"n2", "n4"}, done: true},
		},
		{
			name: "scale down of replicas never ready waits for them", n: 1, strategy: surge1,
			replicas: []replicaView{startingNew("n1", ago(2*time.Second)), startingNew("n2", ago(time.Second))},
			want:     rolloutPlan{retire: []string{"n2"}, next: now.Add(time.Second)},
		},
		{
			name: "wakes just after the earliest ready deadline", n: 1, strategy: deploy.Strategy{MaxSurge: 1, ReadyTimeout: 500 * time.Millisecond},
			replicas: []replicaView{old("o1", true), startingNew("n1", ago(200*time.Millisecond))},
			want:     rolloutPlan{next: now.Add(300*time.Millisecond + time.Millisecond)},
		},
		{
			name: "a new replica not ready in time fails the rollout", n: 2, strategy: surge1,
			replicas: []replicaView{old("o1", true), old("o2", true), func() replicaView {
				v := startingNew("n1", ago(time.Minute+time.Millisecond))
				v.message = "readiness check: GET readyz answered 503 Service Unavailable"
				return v
			}()},
			want: rolloutPlan{fail: &rolloutFailure{"n1", "not ready within 1m0s (readiness check: GET readyz answered 503 Service Unavailable)"}},
		},
		{
			name: "without a message the timeout names the state", n: 1, strategy: surge1,
			replicas: []replicaView{old("o1", true), startingNew("n1", ago(2*time.Minute))},
			want:     rolloutPlan{fail: &rolloutFailure{"n1", "not ready within 1m0s (starting)"}},
		},
		{
			name: "not late at the deadline itself", n: 1, strategy: surge1,
			replicas: []replicaView{old("o1", true), startingNew("n1", ago(time.Minute))},
			want:     rolloutPlan{next: now.Add(time.Millisecond)},
		},
		{
			name: "a new replica crashing before it was ready fails the rollout", n: 2, strategy: surge1,
			replicas: []replicaView{old("o1", true), old("o2", true), func() replicaView {
				v := startingNew("n1", ago(time.Second))
				v.quickExits, v.lastExit, v.state = 3, "exit status 2", "restarting"
				return v
			}()},
			want: rolloutPlan{fail: &rolloutFailure{"n1", "exited 3 times before becoming ready (last: exit status 2)"}},
		},
		{
			name: "a replica that was ready once does not fail the rollout", n: 1, strategy: surge1,
			replicas: []replicaView{func() replicaView {
				v := readyNew("n1", ago(time.Hour))
				v.ready, v.quickExits, v.state = false, 5, "crash-looping"
				return v
			}()},
			want: rolloutPlan{next: now.Add(time.Second)},
		},
		{
			name: "crashing old replicas do not fail the rollout", n: 1, strategy: surge1,
			replicas: []replicaView{func() replicaView {
				v := old("o1", false)
				v.everReady, v.quickExits = false, 5
				return v
			}()},
			want: rolloutPlan{retire: []string{"o1"}, start: 1, next: now.Add(time.Second)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planRollout("new", tt.n, tt.strategy, tt.replicas, now)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(rolloutPlan{}, rolloutFailure{})); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}
