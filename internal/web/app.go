package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// appData is an app's pipeline page.
type appData struct {
	Name     string
	Envs     []envView
	Names    []string
	Final    string
	Controls []string // the controlled environments
	Rows     []commitRow
	Releases []ledger.Deployment // of the final environment, for rollbacks
	Pending  int
}

// commitRow is one commit and where it stands in each environment.
type commitRow struct {
	Commit pipeline.Commit
	Build  *ledger.Build
	Cells  []cell
}

type cell struct {
	Env   string
	Word  string // what happened there, in words
	Class string // for the stylesheet: ok, bad, busy, none
	// Deployment links the deployment that says so, or is 0.
	Deployment int64
	Detail     string
}

const maxRows = 40

func (h *Handler) appPage(w http.ResponseWriter, r *http.Request) {
	a, ok := h.app(w, r)
	if !ok {
		return
	}
	data, err := h.readApp(r.Context(), a)
	if err != nil {
		h.failErr(w, r, "The pipeline of "+a.Name()+" could not be read", err)
		return
	}
	h.render(w, http.StatusOK, "app", h.newPage(r, a.Name(), a.Name(), data))
}

func (h *Handler) readApp(ctx context.Context, a api.App) (appData, error) {
	st, err := a.Status(ctx)
	if err != nil {
		return appData{}, err
	}
	h.commits.add(st.Pending)
	hist, err := a.History(ctx, "", 1000)
	if err != nil {
		return appData{}, err
	}
	builds, err := a.Builds(ctx, ledger.BuildFilter{Limit: 200})
	if err != nil {
		return appData{}, err
	}
	var recent []pipeline.Commit
	if cl, ok := a.(CommitLister); ok {
		if recent, err = cl.RecentCommits(ctx, maxRows); err != nil {
			return appData{}, err
		}
		h.commits.add(recent)
	}
	data := appData{Name: a.Name(), Pending: len(st.Pending)}
	for _, e := range st.Environments {
		data.Envs = append(data.Envs, h.envView(ctx, a, e))
		data.Names = append(data.Names, e.Name)
		if e.Mode == "controlled" {
			data.Controls = append(data.Controls, e.Name)
		}
	}
	if n := len(data.Names); n > 0 {
		data.Final = data.Names[n-1]
	}
	for _, d := range hist {
		if d.Env == data.Final && d.State == ledger.StateSucceeded && d.Kind == ledger.KindRelease {
			data.Releases = append(data.Releases, d)
		}
	}
	data.Rows = h.commitRows(st, recent, hist, builds)
	return data, nil
}

// commitRows puts the newest commits the app knows of (recent on the
// source branch, pending, built or deployed) in rows, newest first, with where each stands.
func (h *Handler) commitRows(st pipeline.Status, recent []pipeline.Commit, hist []ledger.Deployment, builds []ledger.Build) []commitRow {
	type seen struct {
		c    pipeline.Commit
		when time.Time
	}
	order := map[string]*seen{}
	note := func(hash string, when time.Time) {
		if hash == "" {
			return
		}
		s, ok := order[hash]
		if !ok {
			s = &seen{c: pipeline.Commit{Hash: hash, Short: short(hash)}, when: when}
			if c, ok := h.commits.get(hash); ok {
				s.c, s.when = c, c.Time
			}
			order[hash] = s
		}
		if s.c.Time.IsZero() && !when.IsZero() && when.Before(s.when) {
			s.when = when
		}
	}
	for _, c := range st.Pending {
		note(c.Hash, c.Time)
	}
	for _, c := range recent {
		note(c.Hash, c.Time)
	}
	for _, b := range builds {
		note(b.Commit, b.Created)
	}
	for _, d := range hist {
		note(d.Commit, d.CreatedAt)
	}
	for _, e := range st.Environments {
		if e.Commit != nil {
			note(*e.Commit, time.Time{})
		}
	}
	list := make([]*seen, 0, len(order))
	for _, s := range order {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *seen) int {
		if c := b.when.Compare(a.when); c != 0 {
			return c
		}
		return cmp.Compare(a.c.Hash, b.c.Hash)
	})
	if len(list) > maxRows {
		list = list[:maxRows]
	}
	// The newest build and deployment of each commit (lists are newest first).
	lastBuild := map[string]*ledger.Build{}
	for i := range builds {
		if _, ok := lastBuild[builds[i].Commit]; !ok {
			lastBuild[builds[i].Commit] = &builds[i]
		}
	}
	type key struct{ commit, env string }
	lastDep := map[key]ledger.Deployment{}
	for _, d := range hist {
		if d.Kind == ledger.KindScale || d.Kind == ledger.KindStop || d.Kind == ledger.KindStart {
			continue
		}
		k := key{d.Commit, d.Env}
		if _, ok := lastDep[k]; !ok {
			lastDep[k] = d
		}
	}
	final := ""
	if n := len(st.Environments); n > 0 {
		final = st.Environments[n-1].Name
	}
	rows := make([]commitRow, 0, len(list))
	for _, s := range list {
		row := commitRow{Commit: s.c, Build: lastBuild[s.c.Hash]}
		for i, e := range st.Environments {
			c := cell{Env: e.Name, Word: "—", Class: "none"}
			d, deployed := lastDep[key{s.c.Hash, e.Name}]
			switch {
			case e.Commit != nil && *e.Commit == s.c.Hash:
				c.Word, c.Class = "on "+e.Name, "ok"
				if e.Name == final {
					c.Word = "live on " + e.Name
				}
				if e.Release != nil {
					c.Detail = *e.Release
				}
				if deployed {
					c.Deployment = d.ID
				}
			case deployed:
				c.Deployment = d.ID
				c.Word, c.Class, c.Detail = deploymentWord(d)
			case i == 0 && row.Build != nil:
				c.Word, c.Class, c.Detail = buildWord(*row.Build)
			}
			row.Cells = append(row.Cells, c)
		}
		rows = append(rows, row)
	}
	return rows
}

// deploymentWord says where a deployment of a commit that no longer runs
// there ended.
func deploymentWord(d ledger.Deployment) (word, class, detail string) {
	switch d.State {
	case ledger.StatePending, ledger.StateRolling:
		return "rolling: " + d.Step, "busy", ""
	case ledger.StateSucceeded:
		if d.Step == "verified" {
			return "verified on " + d.Env, "ok", "no longer runs there"
		}
		return "was on " + d.Env, "ok", d.ReleaseName
	case ledger.StateRefused:
		return "refused", "bad", d.Reason
	case ledger.StateRolledBack:
		return "rolled back", "bad", d.Reason
	}
	return "failed at " + d.Step, "bad", d.Reason
}

func buildWord(b ledger.Build) (word, class, detail string) {
	switch b.State {
	case ledger.BuildFailed:
		if b.BuildDuration == 0 && b.TestDuration > 0 || strings.Contains(strings.ToLower(b.Reason), "test") {
			return "failed tests", "bad", b.Reason
		}
		return "build failed", "bad", b.Reason
	case ledger.BuildPushed:
		return "built", "ok", ""
	}
	return string(b.State), "busy", ""
}

// plan is what a release, rollback or scale will do, for the confirmation
// page.
type plan struct {
	Action  string
	App     string
	Env     string
	Commit  string
	Target  string
	Force   bool
	Reason  string
	Replica int
	// Steps say what will happen, in order.
	Steps []string
	// Problem says why the change cannot be made as asked; the form is
	// then not offered.
	Problem string
}

// confirm shows what an action will do, with the form that does it.
func (h *Handler) confirm(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := h.app(w, r)
		if !ok {
			return
		}
		if _, ok := h.session(r); !ok {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		q := r.URL.Query()
		p := plan{Action: action, App: a.Name(), Env: q.Get("env"), Commit: strings.TrimSpace(q.Get("commit")),
			Target: strings.TrimSpace(q.Get("target")), Force: q.Get("force") != "", Reason: strings.TrimSpace(q.Get("reason"))}
		st, err := a.Status(r.Context())
		if err != nil {
			h.failErr(w, r, "The status of "+a.Name()+" could not be read", err)
			return
		}
		h.commits.add(st.Pending)
		switch action {
		case "release":
			err = h.planRelease(r.Context(), a, st, &p)
		case "rollback":
			err = h.planRollback(r.Context(), a, st, &p)
		case "scale":
			p.Replica, _ = strconv.Atoi(q.Get("replicas"))
			err = planScale(st, &p)
		}
		if err != nil {
			h.failErr(w, r, "The "+action+" could not be planned", err)
			return
		}
		h.render(w, http.StatusOK, "confirm", h.newPage(r, "Confirm the "+action, a.Name(), p))
	}
}

func envOf(st pipeline.Status, name string) (pipeline.EnvStatus, int, bool) {
	for i, e := range st.Environments {
		if e.Name == name {
			return e, i, true
		}
	}
	return pipeline.EnvStatus{}, -1, false
}

// controlledEnv returns the environment a release or rollback is for: the
// named one, or the last.
func controlledEnv(st pipeline.Status, p *plan) (pipeline.EnvStatus, int, bool) {
	if p.Env == "" && len(st.Environments) > 0 {
		p.Env = st.Environments[len(st.Environments)-1].Name
	}
	e, i, ok := envOf(st, p.Env)
	if !ok {
		p.Problem = fmt.Sprintf("%s has no environment %q.", p.App, p.Env)
		return e, i, false
	}
	if e.Mode != "controlled" {
		p.Problem = fmt.Sprintf("%s is automatic: it takes every commit by itself; only controlled environments are released to and rolled back.", e.Name)
		return e, i, false
	}
	return e, i, true
}

func runsWhat(e pipeline.EnvStatus) string {
	if e.Commit == nil {
		return "nothing yet"
	}
	s := ""
	if e.Release != nil {
		s = *e.Release + ", "
	}
	return s + "commit " + short(*e.Commit) + ", " + shortDigest(deref(e.Digest))
}

func (h *Handler) describe(hash string) string {
	s := "commit " + short(hash)
	if c, ok := h.commits.get(hash); ok {
		s += fmt.Sprintf(" “%s” by %s", c.Subject, c.Author)
	}
	return s
}

func (h *Handler) planRelease(ctx context.Context, a api.App, st pipeline.Status, p *plan) error {
	e, i, ok := controlledEnv(st, p)
	if !ok {
		return nil
	}
	if p.Force && p.Reason == "" {
		p.Problem = "A forced release skips the preflight, so it needs a reason, which is recorded with it."
		return nil
	}
	var from pipeline.EnvStatus
	if i > 0 {
		from = st.Environments[i-1]
	}
	commit, digest := p.Commit, ""
	if commit == "" && from.Commit != nil {
		commit, digest = *from.Commit, deref(from.Digest)
	}
	builds, err := a.Builds(ctx, ledger.BuildFilter{Limit: 500})
	if err != nil {
		return err
	}
	if commit != "" && len(commit) < 40 {
		for _, c := range h.knownCommits(st, builds) {
			if strings.HasPrefix(c, commit) {
				commit = c
				break
			}
		}
	}
	if digest == "" {
		for _, b := range builds {
			if b.Commit == commit && b.Digest != "" {
				digest = b.Digest
				break
			}
		}
	}
	if commit == "" {
		p.Problem = fmt.Sprintf("Nothing to release: %s runs nothing yet.", from.Name)
		return nil
	}
	p.Commit = commit
	what := h.describe(commit)
	p.Steps = append(p.Steps, fmt.Sprintf("Release %s to %s.", what, e.Name))
	if digest != "" {
		p.Steps = append(p.Steps, fmt.Sprintf("The image is the one built for it and tested before: %s (no rebuild).", digest))
	} else {
		p.Steps = append(p.Steps, "The image is the one built for it; this dashboard does not know its digest yet.")
	}
	p.Steps = append(p.Steps, fmt.Sprintf("%s goes from %s to a new release, RC%s (its name is given when the release starts).",
		e.Name, runsWhat(e), h.o.Now().UTC().Format("20060102_1504")))
	if p.Force {
		p.Steps = append(p.Steps, fmt.Sprintf("The preflight is skipped (forced); the release is recorded as forced, with the reason “%s”.", p.Reason))
	} else if from.Name != "" {
		p.Steps = append(p.Steps, fmt.Sprintf("First the preflight checks that it is a fast-forward of what %s runs, on the source branch, and verified on %s; if not, %s is left as it is and you are told why.", e.Name, from.Name, e.Name))
	}
	p.Steps = append(p.Steps, fmt.Sprintf("If %s does not become healthy, it goes back to %s by itself.", e.Name, runsWhat(e)))
	return nil
}

// knownCommits lists every full commit hash the page knows of.
func (h *Handler) knownCommits(st pipeline.Status, builds []ledger.Build) []string {
	var out []string
	for _, c := range st.Pending {
		out = append(out, c.Hash)
	}
	for _, e := range st.Environments {
		if e.Commit != nil {
			out = append(out, *e.Commit)
		}
	}
	for _, b := range builds {
		out = append(out, b.Commit)
	}
	return out
}

func (h *Handler) planRollback(ctx context.Context, a api.App, st pipeline.Status, p *plan) error {
	e, _, ok := controlledEnv(st, p)
	if !ok {
		return nil
	}
	if e.Commit == nil {
		p.Problem = e.Name + " has no release yet: there is nothing to roll back."
		return nil
	}
	hist, err := a.History(ctx, e.Name, 1000)
	if err != nil {
		return err
	}
	var to *ledger.Deployment
	for i, d := range hist {
		if d.State != ledger.StateSucceeded || (d.Kind != ledger.KindRelease && d.Kind != ledger.KindRollback) {
			continue
		}
		switch {
		case p.Target == "" && d.Commit != *e.Commit,
			p.Target != "" && d.Kind == ledger.KindRelease && (d.ReleaseName == p.Target || len(p.Target) >= 7 && strings.HasPrefix(d.Commit, p.Target)):
			to = &hist[i]
		}
		if to != nil {
			break
		}
	}
	if to == nil {
		if p.Target == "" {
			p.Problem = fmt.Sprintf("%s has had no release before %s: there is nothing to go back to.", e.Name, runsWhat(e))
		} else {
			p.Problem = fmt.Sprintf("%s was never released to %s (the history lists its releases).", p.Target, e.Name)
		}
		return nil
	}
	name := to.ReleaseName
	if name == "" {
		name = "the release"
	}
	p.Steps = append(p.Steps,
		fmt.Sprintf("%s goes from %s back to %s: %s, %s.", e.Name, runsWhat(e), name, h.describe(to.Commit), shortDigest(to.Digest)),
		fmt.Sprintf("Its image is the one that ran before, %s; nothing is rebuilt. The registry's live and env-%s tags and the branch move back with it.", to.Digest, e.Name),
		fmt.Sprintf("It keeps %d replicas.", e.Replicas.Desired))
	return nil
}

func planScale(st pipeline.Status, p *plan) error {
	e, _, ok := envOf(st, p.Env)
	switch {
	case !ok:
		p.Problem = fmt.Sprintf("%s has no environment %q.", p.App, p.Env)
	case p.Replica < 1 || p.Replica > 1000:
		p.Problem = "Give a number of replicas from 1 to 1000 (to stop an environment, use slipway stop)."
	case e.Commit == nil:
		p.Problem = e.Name + " runs nothing yet: there is nothing to scale."
	default:
		p.Steps = append(p.Steps,
			fmt.Sprintf("%s goes from %d to %d replicas of %s.", e.Name, e.Replicas.Desired, p.Replica, runsWhat(e)),
			"The image stays the same; replicas are added or drained without dropping a request.")
	}
	return nil
}

// act makes the change a confirmation page sent.
func (h *Handler) act(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := h.app(w, r)
		if !ok {
			return
		}
		env := r.PostFormValue("env")
		var d ledger.Deployment
		var err error
		switch action {
		case "release":
			d, err = a.Release(r.Context(), pipeline.ReleaseRequest{Env: env, Commit: r.PostFormValue("commit"),
				Force: r.PostFormValue("force") == "1", Reason: r.PostFormValue("reason"), Trigger: "release from the dashboard"})
		case "rollback":
			d, err = a.Rollback(r.Context(), pipeline.RollbackRequest{Env: env, Target: r.PostFormValue("target"), Trigger: "rollback from the dashboard"})
		case "scale":
			n, perr := strconv.Atoi(r.PostFormValue("replicas"))
			if perr != nil {
				h.fail(w, r, http.StatusBadRequest, "The scale was not made", "Give the number of replicas as a whole number.")
				return
			}
			d, err = a.Scale(r.Context(), env, n)
		}
		if err != nil {
			heading := "The " + action + " was not made"
			var re *pipeline.RefusedError
			if errors.As(err, &re) {
				heading = "The release was refused"
				h.failBack(w, r, http.StatusConflict, heading, re.Reason+". "+re.Env+" is left as it is.", "/apps/"+a.Name(), a.Name())
				return
			}
			h.failBack(w, r, statusOf(err), heading, err.Error(), "/apps/"+a.Name(), a.Name())
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/apps/%s/deployments/%d", url.PathEscape(a.Name()), d.ID), http.StatusSeeOther)
	}
}
