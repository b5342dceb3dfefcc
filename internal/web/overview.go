package web

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/pipeline"
)

// overviewData is every app × environment, as the overview shows it.
type overviewData struct {
	Apps []appOverview
}

type appOverview struct {
	Name string
	Envs []envView
	// Final is the last environment; Pending counts the commits of the
	// source branch it does not run.
	Final        string
	Pending      int
	PendingError string
	Error        string
}

// envView is one environment with what the status alone does not say.
type envView struct {
	pipeline.EnvStatus
	Subject, Author string
	Health          string
	Rollout         *rolloutView
}

type rolloutView struct {
	pipeline.Rollout
	Started time.Time
}

// health is the environment's health in a word.
func health(e pipeline.EnvStatus) string {
	switch {
	case e.Stopped:
		return "stopped"
	case e.Commit == nil:
		return "not deployed"
	case e.Healthy:
		return "healthy"
	case e.Replicas.Ready > 0:
		return "degraded"
	}
	return "down"
}

// readOverview reads every app's status at the same time.
func (h *Handler) readOverview(ctx context.Context) overviewData {
	return h.rereadOverview(ctx, nil, nil)
}

// rereadOverview reads again the apps that changed, taking the others from
// last; changed nil means every app.
func (h *Handler) rereadOverview(ctx context.Context, last map[string]appOverview, changed []string) overviewData {
	list := h.o.Apps.List()
	out := overviewData{Apps: make([]appOverview, len(list))}
	var wg sync.WaitGroup
	for i, a := range list {
		if prev, ok := last[a.Name()]; ok && changed != nil && !slices.Contains(changed, a.Name()) {
			out.Apps[i] = prev
			continue
		}
		wg.Go(func() { out.Apps[i] = h.appOverview(ctx, a) })
	}
	wg.Wait()
	return out
}

func (h *Handler) appOverview(ctx context.Context, a api.App) appOverview {
	ao := appOverview{Name: a.Name()}
	st, err := a.Status(ctx)
	if err != nil {
		ao.Error = err.Error()
		return ao
	}
	h.commits.add(st.Pending)
	ao.Pending, ao.PendingError = len(st.Pending), st.PendingError
	if n := len(st.Environments); n > 0 {
		ao.Final = st.Environments[n-1].Name
	}
	h.learnCommits(ctx, a, st)
	for _, e := range st.Environments {
		ao.Envs = append(ao.Envs, h.envView(ctx, a, e))
	}
	return ao
}

// learnCommits lists a's recent commits when an environment runs one the
// dashboard cannot name yet, once per such commit.
func (h *Handler) learnCommits(ctx context.Context, a api.App, st pipeline.Status) {
	cl, ok := a.(CommitLister)
	if !ok {
		return
	}
	for _, e := range st.Environments {
		if e.Commit == nil {
			continue
		}
		if _, known := h.commits.get(*e.Commit); known || !h.commits.tryOnce(*e.Commit) {
			continue
		}
		list, err := cl.RecentCommits(ctx, 200)
		if err != nil {
			h.log.Warn("list recent commits", "app", a.Name(), "err", err)
			return
		}
		h.commits.add(list)
		return
	}
}

func (h *Handler) envView(ctx context.Context, a api.App, e pipeline.EnvStatus) envView {
	v := envView{EnvStatus: e, Health: health(e)}
	if e.Commit != nil {
		if c, ok := h.commits.get(*e.Commit); ok {
			v.Subject, v.Author = c.Subject, c.Author
		}
	}
	if e.Rollout != nil {
		v.Rollout = &rolloutView{Rollout: *e.Rollout}
		if d, err := a.Deployment(ctx, e.Rollout.ID); err == nil {
			v.Rollout.Started = d.CreatedAt
		}
	}
	return v
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	data := h.readOverview(r.Context())
	h.render(w, http.StatusOK, "overview", h.newPage(r, "Overview", "overview", data))
}

// renderOverview renders the overview's live part alone.
func (h *Handler) renderOverview(data overviewData) ([]byte, error) {
	var buf bytes.Buffer
	if err := h.frag.ExecuteTemplate(&buf, "overview-body", data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
