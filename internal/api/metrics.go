package api

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"slipway.dev/slipway/internal/ledger"
)

// DeploymentCounter counts one app's deployments in the ledger.
type DeploymentCounter interface {
	Counts(ctx context.Context) ([]ledger.DeploymentCount, error)
}

// EnableMetrics serves Prometheus metrics at GET /metrics (open to loopback,
// the token from elsewhere), read from every app's status and the ledger at
// each scrape; every series carries the app's name in the label app.
// counts returns the counter of an app's deployments; nil leaves
// slipway_deployments out.
func (s *Server) EnableMetrics(counts func(app string) DeploymentCounter) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{apps: s.apps, counts: counts}, prometheus.NewGoCollector())
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	s.mux.HandleFunc("GET /metrics", s.read(func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	}))
}

var (
	descReady = prometheus.NewDesc("slipway_environment_replicas_ready",
		"Replicas of the environment that are ready.", []string{"app", "env"}, nil)
	descDesired = prometheus.NewDesc("slipway_environment_replicas_desired",
		"Replicas the environment should run.", []string{"app", "env"}, nil)
	descHealthy = prometheus.NewDesc("slipway_environment_healthy",
		"1 when every desired replica of the environment is ready.", []string{"app", "env"}, nil)
	descInfo = prometheus.NewDesc("slipway_environment_info",
		"What the environment runs (always 1).", []string{"app", "env", "commit", "release", "digest"}, nil)
	descSince = prometheus.NewDesc("slipway_environment_since_seconds",
		"When the running version went live, in Unix seconds.", []string{"app", "env"}, nil)
	descRollout = prometheus.NewDesc("slipway_environment_rollout_in_progress",
		"1 while a deployment of the environment is in flight.", []string{"app", "env"}, nil)
	descPending = prometheus.NewDesc("slipway_pending_commits",
		"Commits on the app's source branch that its final environment does not run.", []string{"app"}, nil)
	descDeployments = prometheus.NewDesc("slipway_deployments",
		"Deployments recorded in the ledger, by environment, kind and state.", []string{"app", "env", "kind", "state"}, nil)
	descUp = prometheus.NewDesc("slipway_status_up",
		"1 when the app's status could be read at this scrape.", []string{"app"}, nil)
)

type collector struct {
	apps   Apps
	counts func(app string) DeploymentCounter
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append([]*prometheus.Desc{descReady, descDesired, descHealthy, descInfo, descSince, descRollout, descPending, descDeployments, descUp}, doraDescs...) {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, a := range c.apps.List() {
		c.collectApp(ctx, ch, a)
		collectDORA(ctx, ch, a)
	}
}

func (c *collector) collectApp(ctx context.Context, ch chan<- prometheus.Metric, a App) {
	app := a.Name()
	st, err := a.Status(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0, app)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1, app)
	for _, e := range st.Environments {
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, float64(e.Replicas.Ready), app, e.Name)
		ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(e.Replicas.Desired), app, e.Name)
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, boolFloat(e.Healthy), app, e.Name)
		ch <- prometheus.MustNewConstMetric(descRollout, prometheus.GaugeValue, boolFloat(e.Rollout != nil), app, e.Name)
		if e.Commit != nil {
			rel, digest := "", ""
			if e.Release != nil {
				rel = *e.Release
			}
			if e.Digest != nil {
				digest = *e.Digest
			}
			ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, app, e.Name, *e.Commit, rel, digest)
		}
		if e.Since != nil {
			ch <- prometheus.MustNewConstMetric(descSince, prometheus.GaugeValue, float64(e.Since.Unix()), app, e.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(len(st.Pending)), app)
	if c.counts == nil {
		return
	}
	counter := c.counts(app)
	if counter == nil {
		return
	}
	counts, err := counter.Counts(ctx)
	if err != nil {
		return
	}
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(descDeployments, prometheus.GaugeValue, float64(n.N), app, n.Env, string(n.Kind), string(n.State))
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
