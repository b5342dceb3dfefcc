package web

import (
	"net/http"
	"slices"
	"strconv"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

type historyData struct {
	App, Env, Kind, Outcome string
	Limit                   int
	Apps, Envs              []string
	Kinds, Outcomes         []string
	Rows                    []ledger.Deployment
	Errors                  []string
}

var (
	kinds    = []string{"deploy", "release", "rollback", "scale", "stop", "start"}
	outcomes = []string{"pending", "rolling", "succeeded", "failed", "refused", "rolled-back"}
)

func (h *Handler) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := historyData{App: q.Get("app"), Env: q.Get("env"), Kind: q.Get("kind"), Outcome: q.Get("outcome"),
		Kinds: kinds, Outcomes: outcomes, Limit: 200}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 && n <= 10000 {
		data.Limit = n
	}
	var list []api.App
	for _, a := range h.o.Apps.List() {
		data.Apps = append(data.Apps, a.Name())
		for _, e := range a.Environments() {
			if !slices.Contains(data.Envs, e) {
				data.Envs = append(data.Envs, e)
			}
		}
		if data.App == "" || data.App == a.Name() {
			list = append(list, a)
		}
	}
	for _, a := range list {
		env := data.Env
		if env != "" && !slices.Contains(a.Environments(), env) {
			continue
		}
		// Filtering by kind and outcome happens here, so read more.
		limit := data.Limit
		if data.Kind != "" || data.Outcome != "" {
			limit = 10000
		}
		deps, err := a.History(r.Context(), env, limit)
		if err != nil {
			data.Errors = append(data.Errors, a.Name()+": "+err.Error())
			continue
		}
		for _, d := range deps {
			if (data.Kind == "" || string(d.Kind) == data.Kind) && (data.Outcome == "" || string(d.State) == data.Outcome) {
				if d.App == "" {
					d.App = a.Name()
				}
				data.Rows = append(data.Rows, d)
			}
		}
	}
	slices.SortStableFunc(data.Rows, func(a, b ledger.Deployment) int { return b.CreatedAt.Compare(a.CreatedAt) })
	if len(data.Rows) > data.Limit {
		data.Rows = data.Rows[:data.Limit]
	}
	h.render(w, http.StatusOK, "history", h.newPage(r, "History", "history", data))
}

type diffData struct {
	App      string
	Envs     []string
	From, To string
	FromEnv  pipeline.EnvStatus
	ToEnv    pipeline.EnvStatus
	Same     bool // the same digest runs in both
	Commits  []pipeline.Commit
	Error    string
}

func (h *Handler) diff(w http.ResponseWriter, r *http.Request) {
	a, ok := h.app(w, r)
	if !ok {
		return
	}
	envs := a.Environments()
	data := diffData{App: a.Name(), Envs: envs, From: r.URL.Query().Get("from"), To: r.URL.Query().Get("to")}
	if data.From == "" && len(envs) > 0 {
		data.From = envs[0]
	}
	if data.To == "" && len(envs) > 0 {
		data.To = envs[len(envs)-1]
	}
	st, err := a.Status(r.Context())
	if err != nil {
		h.failErr(w, r, "The status of "+a.Name()+" could not be read", err)
		return
	}
	var okFrom, okTo bool
	data.FromEnv, _, okFrom = envOf(st, data.From)
	data.ToEnv, _, okTo = envOf(st, data.To)
	if !okFrom || !okTo {
		h.fail(w, r, http.StatusNotFound, "No such environment", a.Name()+" has no environment by that name.")
		return
	}
	data.Same = data.FromEnv.Digest != nil && data.ToEnv.Digest != nil && *data.FromEnv.Digest == *data.ToEnv.Digest
	data.Commits, err = a.Diff(r.Context(), data.From, data.To)
	if err != nil {
		data.Error = err.Error()
	}
	h.commits.add(data.Commits)
	h.render(w, http.StatusOK, "diff", h.newPage(r, "Diff of "+a.Name(), a.Name(), data))
}
