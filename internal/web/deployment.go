package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/ledger"
)

// Step is one step of a deployment, decoded from the JSON of what
// Options.Steps returns (ledger.Step).
type Step struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Message  string    `json:"message"`
}

// Took is how long the step ran (so far, while it runs).
func (s Step) Took(now time.Time) time.Duration {
	if s.Finished.IsZero() {
		return now.Sub(s.Started)
	}
	return s.Finished.Sub(s.Started)
}

type deploymentData struct {
	App        string
	D          ledger.Deployment
	InFlight   bool
	Steps      []Step
	StepsError string
	Build      *ledger.Build
	// HasLog: the app keeps build logs.
	HasLog   bool
	Replicas []deploy.Replica
	Now      time.Time
}

func (h *Handler) deployment(w http.ResponseWriter, r *http.Request) {
	a, ok := h.app(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		h.fail(w, r, http.StatusNotFound, "No such deployment", fmt.Sprintf("%q is not a deployment number.", r.PathValue("id")))
		return
	}
	d, err := a.Deployment(r.Context(), id)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			h.fail(w, r, http.StatusNotFound, "No such deployment", fmt.Sprintf("%s has no deployment %d.", a.Name(), id))
			return
		}
		h.failErr(w, r, "The deployment could not be read", err)
		return
	}
	data := deploymentData{App: a.Name(), D: d, InFlight: !d.State.Final(), Now: h.o.Now()}
	data.Steps, err = h.steps(r.Context(), a, id)
	if err != nil {
		data.StepsError = err.Error()
	}
	if d.Kind == ledger.KindDeploy {
		if builds, err := a.Builds(r.Context(), ledger.BuildFilter{Limit: 500}); err == nil {
			for i := range builds {
				if builds[i].Commit == d.Commit {
					data.Build = &builds[i]
					break
				}
			}
		}
		_, data.HasLog = a.(BuildLogger)
	}
	if st, err := a.Status(r.Context()); err == nil {
		for _, e := range st.Environments {
			if e.Name == d.Env {
				data.Replicas = e.Instances
			}
		}
	}
	h.render(w, http.StatusOK, "deployment", h.newPage(r, fmt.Sprintf("Deployment %d of %s", id, a.Name()), a.Name(), data))
}

func (h *Handler) steps(ctx context.Context, a api.App, id int64) ([]Step, error) {
	var v any
	var err error
	if h.o.Steps != nil {
		v, err = h.o.Steps(ctx, a, id)
	} else {
		v, err = a.Steps(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("steps of deployment %d: %w", id, err)
	}
	var out []Step
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("steps of deployment %d: %w", id, err)
	}
	return out, nil
}

var commitArg = regexp.MustCompile(`^([0-9a-f]{7,40}|latest)$`)

// buildLog streams the build log of a commit as plain text, following it
// while the build runs when follow=1.
func (h *Handler) buildLog(w http.ResponseWriter, r *http.Request) {
	a, ok := h.o.Apps.Get(r.PathValue("app"))
	if !ok {
		http.Error(w, "no such app", http.StatusNotFound)
		return
	}
	bl, ok := a.(BuildLogger)
	if !ok {
		http.Error(w, "this controller keeps no build logs", http.StatusNotImplemented)
		return
	}
	commit := r.PathValue("commit")
	if !commitArg.MatchString(commit) {
		http.Error(w, "give a commit as 7 to 40 hex digits, or latest", http.StatusBadRequest)
		return
	}
	follow := r.URL.Query().Get("follow") == "1"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	ctx, cancel := h.requestContext(r)
	defer cancel()
	if err := bl.BuildLog(ctx, commit, follow, fw); err != nil && !fw.wrote {
		http.Error(w, err.Error(), statusOf(err))
	}
}

type flushWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.wrote = true
	n, err := f.w.Write(p)
	f.rc.Flush()
	return n, err
}
