package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dbErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "birthday_http_requests_total",
			Help: "HTTP requests served, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "birthday_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		dbErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "birthday_db_errors_total",
			Help: "Database calls that failed, by operation (get, put, ping).",
		}, []string{"op"}),
	}
	reg.MustRegister(m.requests, m.duration, m.dbErrors)
	for _, op := range []string{"get", "put", "ping"} {
		m.dbErrors.WithLabelValues(op)
	}
	return m
}

func (m *metrics) observe(route, method string, code int, elapsed time.Duration) {
	switch method {
	case "GET", "HEAD", "PUT":
	default:
		method = "other" // keep the label set bounded
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(elapsed.Seconds())
}
