package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/slipway/internal/dora"
)

// DefaultDORAWindow is the window of the DORA routes when the request
// names none.
const DefaultDORAWindow = "30d"

// DORAReports is the answer of GET /api/v1/dora: every app's delivery
// metrics together, then each app's, in the configuration's order.
type DORAReports struct {
	All  dora.Report   `json:"all"`
	Apps []dora.Report `json:"apps"`
}

// routeDORA serves the delivery metrics of one app and of every app.
func (s *Server) routeDORA() {
	s.mux.HandleFunc("GET /api/v1/apps/{app}/dora", s.read(s.scoped(s.appDORA)))
	s.mux.HandleFunc("GET /api/v1/dora", s.read(s.allDORA))
}

// doraWindow reads the request's since (default DefaultDORAWindow).
func doraWindow(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		v = DefaultDORAWindow
	}
	d, err := dora.ParseWindow(v)
	if err != nil {
		return 0, invalid("since %q: give a number of days such as 7d, 30d or 90d, or a duration such as 36h (at least 1m, at most %dd)",
			v, dora.MaxWindow/dora.Day)
	}
	return d, nil
}

func (s *Server) appDORA(w http.ResponseWriter, r *http.Request, a App) error {
	since, err := doraWindow(r)
	if err != nil {
		return err
	}
	rep, err := a.DORA(r.Context(), since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) allDORA(w http.ResponseWriter, r *http.Request) error {
	since, err := doraWindow(r)
	if err != nil {
		return err
	}
	list := s.apps.List()
	reps, err := doraReports(r.Context(), list, since)
	if err != nil {
		return err
	}
	out := DORAReports{Apps: reps}
	until := time.Now().UTC()
	if len(reps) > 0 {
		until = reps[0].Until
	}
	out.All = dora.Combine(reps, until.Add(-since), until)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// DORAReport returns the DORA report of the app named app over the last
// since, or, with app "", of every app together.
func DORAReport(ctx context.Context, apps Apps, app string, since time.Duration) (dora.Report, error) {
	if app != "" {
		a, ok := apps.Get(app)
		if !ok {
			return dora.Report{}, fmt.Errorf("%w: %s", ErrUnknownApp, app)
		}
		rep, err := a.DORA(ctx, since)
		rep.App = app
		return rep, err
	}
	reps, err := doraReports(ctx, apps.List(), since)
	if err != nil {
		return dora.Report{}, err
	}
	until := time.Now().UTC()
	if len(reps) > 0 {
		until = reps[0].Until
	}
	return dora.Combine(reps, until.Add(-since), until), nil
}

// doraReports computes the delivery metrics of every app in list at the
// same time.
func doraReports(ctx context.Context, list []App, since time.Duration) ([]dora.Report, error) {
	reps := make([]dora.Report, len(list))
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, a := range list {
		wg.Go(func() {
			rep, err := a.DORA(ctx, since)
			if err != nil {
				errs[i] = fmt.Errorf("delivery metrics of %s: %w", a.Name(), err)
				return
			}
			rep.App = a.Name()
			reps[i] = rep
		})
	}
	wg.Wait()
	return reps, errors.Join(errs...)
}

// DORA returns app's delivery metrics over since (a window such as "30d";
// "" for the default).
func (c *Client) DORA(ctx context.Context, app, since string) (dora.Report, error) {
	var rep dora.Report
	err := c.do(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/dora?"+doraQuery(since), nil, &rep)
	return rep, err
}

// DORAAll returns every app's delivery metrics over since, together and
// each app's.
func (c *Client) DORAAll(ctx context.Context, since string) (DORAReports, error) {
	var reps DORAReports
	err := c.do(ctx, http.MethodGet, "/api/v1/dora?"+doraQuery(since), nil, &reps)
	return reps, err
}

func doraQuery(since string) string {
	if since == "" {
		return ""
	}
	return url.Values{"since": {since}}.Encode()
}

// The delivery metrics on /metrics: each app's, over each of dora.Windows.
var (
	descDORADeployments = prometheus.NewDesc("slipway_dora_deployments",
		"Releases to the app's final environment that went live in the window.", []string{"app", "window"}, nil)
	descDORAPerDay = prometheus.NewDesc("slipway_dora_deployments_per_day",
		"Deployment frequency: releases that went live in the window, per day.", []string{"app", "window"}, nil)
	descDORALeadMedian = prometheus.NewDesc("slipway_dora_lead_time_median_seconds",
		"Median lead time for changes: first commit of a release to live on the final environment.", []string{"app", "window"}, nil)
	descDORALeadP90 = prometheus.NewDesc("slipway_dora_lead_time_p90_seconds",
		"90th percentile of the lead time for changes.", []string{"app", "window"}, nil)
	descDORAReleases = prometheus.NewDesc("slipway_dora_releases",
		"Releases to the final environment that ended in the window: live, failed or rolled back.", []string{"app", "window"}, nil)
	descDORAFailures = prometheus.NewDesc("slipway_dora_change_failures",
		"Releases of the window that failed or were rolled back.", []string{"app", "window"}, nil)
	descDORAFailureRate = prometheus.NewDesc("slipway_dora_change_failure_rate",
		"Change failure rate: change failures over releases, 0 to 1.", []string{"app", "window"}, nil)
	descDORARestoreMedian = prometheus.NewDesc("slipway_dora_time_to_restore_median_seconds",
		"Median time to restore: a change failure to the next release or rollback that went live.", []string{"app", "window"}, nil)
	descDORARestoreP90 = prometheus.NewDesc("slipway_dora_time_to_restore_p90_seconds",
		"90th percentile of the time to restore.", []string{"app", "window"}, nil)
	descDORAUnrestored = prometheus.NewDesc("slipway_dora_unrestored_failures",
		"Change failures of the window that nothing restored yet.", []string{"app", "window"}, nil)

	doraDescs = []*prometheus.Desc{descDORADeployments, descDORAPerDay, descDORALeadMedian, descDORALeadP90, descDORAReleases,
		descDORAFailures, descDORAFailureRate, descDORARestoreMedian, descDORARestoreP90, descDORAUnrestored}
)

// collectDORA sends a's delivery metrics over each window; a series with
// nothing to measure (a median of no lead times, a rate of no releases)
// is left out.
func collectDORA(ctx context.Context, ch chan<- prometheus.Metric, a App) {
	app := a.Name()
	for _, w := range dora.Windows {
		r, err := a.DORA(ctx, w)
		if err != nil {
			continue // slipway_status_up says whether the app can be read
		}
		win := dora.FormatWindow(w)
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, app, win)
		}
		gauge(descDORADeployments, float64(r.Deployments))
		gauge(descDORAPerDay, r.DeploymentsPerDay)
		gauge(descDORAReleases, float64(r.Releases))
		gauge(descDORAFailures, float64(r.ChangeFailures))
		gauge(descDORAUnrestored, float64(r.Unrestored))
		if r.Releases > 0 {
			gauge(descDORAFailureRate, r.ChangeFailureRate)
		}
		if r.LeadTimes > 0 {
			gauge(descDORALeadMedian, r.LeadTimeMedian.Seconds())
			gauge(descDORALeadP90, r.LeadTimeP90.Seconds())
		}
		if r.Restores > 0 {
			gauge(descDORARestoreMedian, r.TimeToRestoreMedian.Seconds())
			gauge(descDORARestoreP90, r.TimeToRestoreP90.Seconds())
		}
	}
}
