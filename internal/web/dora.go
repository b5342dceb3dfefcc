package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// doraReport is what the DORA page shows of a report: the fields of
// GET /api/v1/dora's JSON (docs/api.md) it needs.
type doraReport struct {
	App                        string    `json:"app"`
	Since                      time.Time `json:"since"`
	Until                      time.Time `json:"until"`
	Window                     string    `json:"window"`
	Deployments                int       `json:"deployments"`
	DeploymentsPerDay          float64   `json:"deploymentsPerDay"`
	LeadTimeMedianSeconds      float64   `json:"leadTimeMedianSeconds"`
	LeadTimeP90Seconds         float64   `json:"leadTimeP90Seconds"`
	ChangeFailures             int       `json:"changeFailures"`
	ChangeFailureRate          float64   `json:"changeFailureRate"`
	TimeToRestoreMedianSeconds float64   `json:"timeToRestoreMedianSeconds"`
	TimeToRestoreP90Seconds    float64   `json:"timeToRestoreP90Seconds"`
	Restores                   int       `json:"restores"`
	Daily                      []doraDay `json:"daily"`
}

type doraDay struct {
	Date        string `json:"date"`
	Day         string `json:"day"`
	Deployments int    `json:"deployments"`
	Failures    int    `json:"failures"`
}

func (d doraDay) label() string {
	s := d.Date
	if s == "" {
		s = d.Day
	}
	if len(s) >= 10 {
		s = s[:10]
	}
	return s
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// LeadMedian and the like are the report's durations, for the template.
func (r doraReport) LeadMedian() time.Duration    { return seconds(r.LeadTimeMedianSeconds) }
func (r doraReport) LeadP90() time.Duration       { return seconds(r.LeadTimeP90Seconds) }
func (r doraReport) RestoreMedian() time.Duration { return seconds(r.TimeToRestoreMedianSeconds) }
func (r doraReport) RestoreP90() time.Duration    { return seconds(r.TimeToRestoreP90Seconds) }

var doraWindows = []struct {
	Name string
	D    time.Duration
}{{"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}, {"90d", 90 * 24 * time.Hour}}

type doraWindow struct {
	Name   string
	Report doraReport
	Error  string
}

type doraData struct {
	App       string
	Apps      []string
	Window    string
	Windows   []doraWindow
	Chart     *chart
	Available bool
}

func (h *Handler) dora(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := doraData{App: q.Get("app"), Window: q.Get("window"), Available: h.o.DORA != nil}
	for _, a := range h.o.Apps.List() {
		data.Apps = append(data.Apps, a.Name())
	}
	if data.App != "" && !slices.Contains(data.Apps, data.App) {
		h.fail(w, r, http.StatusNotFound, "No such app", fmt.Sprintf("This controller runs no app %q.", data.App))
		return
	}
	if data.Window == "" {
		data.Window = "30d"
	}
	if data.Available {
		for _, win := range doraWindows {
			rep, err := h.doraReport(r.Context(), data.App, win.D)
			dw := doraWindow{Name: win.Name, Report: rep}
			if err != nil {
				dw.Error = err.Error()
			}
			data.Windows = append(data.Windows, dw)
			if win.Name == data.Window && err == nil {
				data.Chart = dailyChart(rep.Daily)
			}
		}
	}
	title := "DORA metrics"
	if data.App != "" {
		title += " of " + data.App
	}
	h.render(w, http.StatusOK, "dora", h.newPage(r, title, "dora", data))
}

func (h *Handler) doraReport(ctx context.Context, app string, since time.Duration) (doraReport, error) {
	v, err := h.o.DORA(ctx, app, since)
	if err != nil {
		return doraReport{}, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return doraReport{}, fmt.Errorf("DORA report: %w", err)
	}
	var rep doraReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return doraReport{}, fmt.Errorf("DORA report: %w", err)
	}
	return rep, nil
}

// chart is a bar chart of deployments per day, failures drawn over them,
// laid out here so that the template only writes numbers.
type chart struct {
	W, H  int
	Max   int
	Bars  []bar
	Ticks []tick
	// BaseY is where the bars stand.
	BaseY int
}

type bar struct {
	X, W               int
	Y, H               int // all deployments
	FailY, FailH       int // failures
	Label              string
	Deployments, Fails int
}

type tick struct {
	X     int
	Label string
}

func dailyChart(days []doraDay) *chart {
	if len(days) == 0 {
		return nil
	}
	const w, h, left, bottom, top = 720, 200, 30, 20, 10
	c := &chart{W: w, H: h, BaseY: h - bottom}
	for _, d := range days {
		c.Max = max(c.Max, d.Deployments)
	}
	scale := 1.0
	if c.Max > 0 {
		scale = float64(h-bottom-top) / float64(c.Max)
	}
	step := float64(w-left) / float64(len(days))
	bw := max(int(step*0.8), 1)
	every := max(len(days)/6, 1)
	for i, d := range days {
		x := left + int(float64(i)*step)
		bh := int(float64(d.Deployments) * scale)
		fh := int(float64(min(d.Failures, d.Deployments)) * scale)
		c.Bars = append(c.Bars, bar{X: x, W: bw, Y: c.BaseY - bh, H: bh, FailY: c.BaseY - fh, FailH: fh,
			Label: d.label(), Deployments: d.Deployments, Fails: d.Failures})
		if i%every == 0 {
			c.Ticks = append(c.Ticks, tick{X: x, Label: d.label()})
		}
	}
	return c
}
