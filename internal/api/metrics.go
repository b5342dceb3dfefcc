package api

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"slipway.dev/slipway/internal/ledger"
)

// DeploymentCounter counts the ledger's deployments.
type DeploymentCounter interface {
	Counts(ctx context.Context) ([]ledger.DeploymentCount, error)
}

// EnableMetrics serves Prometheus metrics at GET /metrics (open to loopback,
// the token from elsewhere), read from the controller's status and the
// ledger at each scrape.
func (s *Server) EnableMetrics(counts DeploymentCounter) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{ctl: s.ctl, counts: counts}, prometheus.NewGoCollector())
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	s.mux.HandleFunc("GET /metrics", s.read(func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	}))
}

var (
	descReady = prometheus.NewDesc("slipway_environment_replicas_ready",
		"Replicas of the environment that are ready.", []string{"env"}, nil)
	descDesired = prometheus.NewDesc("slipway_environment_replicas_desired",
		"Replicas the environment should run.", []string{"env"}, nil)
	descHealthy = prometheus.NewDesc("slipway_environment_healthy",
		"1 when every desired replica of the environment is ready.", []string{"env"}, nil)
	descInfo = prometheus.NewDesc("slipway_environment_info",
		"What the environment runs (always 1).", []string{"env", "commit", "release", "digest"}, nil)
	descSince = prometheus.NewDesc("slipway_environment_since_seconds",
		"When the running version went live, in Unix seconds.", []string{"env"}, nil)
	descRollout = prometheus.NewDesc("slipway_environment_rollout_in_progress",
		"1 while a deployment of the environment is in flight.", []string{"env"}, nil)
	descPending = prometheus.NewDesc("slipway_pending_commits",
		"Commits on master that prod does not run.", nil, nil)
	descDeployments = prometheus.NewDesc("slipway_deployments",
		"Deployments recorded in the ledger, by environment, kind and state.", []string{"env", "kind", "state"}, nil)
	descUp = prometheus.NewDesc("slipway_status_up",
		"1 when the controller's status could be read at this scrape.", nil, nil)
)

type collector struct {
	ctl    Controller
	counts DeploymentCounter
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descDesired, descHealthy, descInfo, descSince, descRollout, descPending, descDeployments, descUp} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.ctl.Status(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for _, e := range st.Environments {
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, float64(e.Replicas.Ready), e.Name)
		ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(e.Replicas.Desired), e.Name)
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, boolFloat(e.Healthy), e.Name)
		ch <- prometheus.MustNewConstMetric(descRollout, prometheus.GaugeValue, boolFloat(e.Rollout != nil), e.Name)
		if e.Commit != nil {
			rel, digest := "", ""
			if e.Release != nil {
				rel = *e.Release
			}
			if e.Digest != nil {
				digest = *e.Digest
			}
			ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, e.Name, *e.Commit, rel, digest)
		}
		if e.Since != nil {
			ch <- prometheus.MustNewConstMetric(descSince, prometheus.GaugeValue, float64(e.Since.Unix()), e.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(len(st.Pending)))
	if c.counts == nil {
		return
	}
	counts, err := c.counts.Counts(ctx)
	if err != nil {
		return
	}
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(descDeployments, prometheus.GaugeValue, float64(n.N), n.Env, string(n.Kind), string(n.State))
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
