package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
)

// ErrUnreachable is returned when no controller answers at the address.
var ErrUnreachable = errors.New("no slipway controller answers")

// Client calls the API.
type Client struct {
	// BaseURL is the controller, e.g. http://127.0.0.1:8400.
	BaseURL string
	// Token is sent with every request (needed for changes).
	Token string
	HTTP  *http.Client
}

// NewClient returns a client of the controller at base.
func NewClient(base, token string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s (start it with `slipway serve` or `slipway demo`, or point --server / SLIPWAY_SERVER at it): %w", ErrUnreachable, c.BaseURL, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		e := &Error{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Code, e.Message = CodeInternal, fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		return nil, e
	}
	return resp, nil
}

// appPath is the path of an app's route: /api/v1/apps/APP/ROUTE, or
// /api/v1/ROUTE when app is "" (which works while the controller runs one
// app).
func appPath(app, route string) string {
	if app == "" {
		return "/api/v1" + route
	}
	return "/api/v1/apps/" + url.PathEscape(app) + route
}

// Apps lists the apps the controller runs, in its configuration's order.
func (c *Client) Apps(ctx context.Context) ([]AppInfo, error) {
	var l AppList
	err := c.do(ctx, http.MethodGet, "/api/v1/apps", nil, &l)
	return l.Apps, err
}

// Status returns what runs where in app ("": the only app).
func (c *Client) Status(ctx context.Context, app string) (pipeline.Status, error) {
	var st pipeline.Status
	err := c.do(ctx, http.MethodGet, appPath(app, "/status"), nil, &st)
	return st, err
}

// StatusAll returns the status of every app the controller runs, in its
// configuration's order.
func (c *Client) StatusAll(ctx context.Context) ([]pipeline.Status, error) {
	var st struct {
		pipeline.Status
		Apps []pipeline.Status `json:"apps"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		return nil, err
	}
	if st.Apps != nil {
		return st.Apps, nil
	}
	return []pipeline.Status{st.Status}, nil
}

// History returns the newest deployments of app's environment env (of all
// its environments, and its builds, when env is empty).
func (c *Client) History(ctx context.Context, app, env string, limit int) (History, error) {
	q := url.Values{}
	if env != "" {
		q.Set("env", env)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var h History
	err := c.do(ctx, http.MethodGet, appPath(app, "/history?"+q.Encode()), nil, &h)
	return h, err
}

// Builds returns app's newest builds.
func (c *Client) Builds(ctx context.Context, app string, limit int) ([]ledger.Build, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var b Builds
	err := c.do(ctx, http.MethodGet, appPath(app, "/builds?"+q.Encode()), nil, &b)
	return b.Builds, err
}

// Diff returns the commits app's environment from runs and to does not.
func (c *Client) Diff(ctx context.Context, app, from, to string) ([]pipeline.Commit, error) {
	q := url.Values{"from": {from}, "to": {to}}
	var d Diff
	err := c.do(ctx, http.MethodGet, appPath(app, "/diff?"+q.Encode()), nil, &d)
	return d.Commits, err
}

// Deployment returns one of app's deployments.
func (c *Client) Deployment(ctx context.Context, app string, id int64) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodGet, appPath(app, "/deployments/"+strconv.FormatInt(id, 10)), nil, &d)
	return d, err
}

// DeploymentDetail returns one of app's deployments with its steps (none
// from a controller that records no steps).
func (c *Client) DeploymentDetail(ctx context.Context, app string, id int64) (DeploymentDetail, error) {
	var d DeploymentDetail
	err := c.do(ctx, http.MethodGet, appPath(app, "/deployments/"+strconv.FormatInt(id, 10)), nil, &d)
	return d, err
}

// Release starts a release of app.
func (c *Client) Release(ctx context.Context, app string, req ReleaseRequest) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, appPath(app, "/releases"), req, &d)
	return d, err
}

// Rollback starts a rollback of app.
func (c *Client) Rollback(ctx context.Context, app string, req RollbackRequest) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, appPath(app, "/rollbacks"), req, &d)
	return d, err
}

// Scale starts a scale change of app's environment env.
func (c *Client) Scale(ctx context.Context, app, env string, replicas int) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, appPath(app, "/scale"), ScaleRequest{Env: env, Replicas: replicas}, &d)
	return d, err
}

// Stop stops every replica of app's environment env.
func (c *Client) Stop(ctx context.Context, app, env string) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, appPath(app, "/environments/"+url.PathEscape(env)+"/stop"), nil, &d)
	return d, err
}

// Start starts app's stopped environment env again.
func (c *Client) Start(ctx context.Context, app, env string) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, appPath(app, "/environments/"+url.PathEscape(env)+"/start"), nil, &d)
	return d, err
}

// Leftovers lists the apps and environments that left the configuration.
func (c *Client) Leftovers(ctx context.Context) ([]Leftover, error) {
	var l Leftovers
	err := c.do(ctx, http.MethodGet, "/api/v1/leftovers", nil, &l)
	return l.Leftovers, err
}

// Remove deletes what a leftover app or environment left behind.
func (c *Client) Remove(ctx context.Context, req RemoveRequest) (RemoveReport, error) {
	var r RemoveReport
	err := c.do(ctx, http.MethodPost, "/api/v1/remove", req, &r)
	return r, err
}

// Logs copies the logs of app's environment env to w; with follow, until
// ctx ends.
func (c *Client) Logs(ctx context.Context, app, env string, follow bool, w io.Writer) error {
	return c.stream(ctx, appPath(app, "/logs/"+url.PathEscape(env)), follow, w)
}

// stream copies the text answer of GET path to w; with follow, until the
// server ends it or ctx ends, which is not an error.
func (c *Client) stream(ctx context.Context, path string, follow bool, w io.Writer) error {
	if follow {
		path += "?follow=1"
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// Wait follows app's deployment id until it ends, calling progress on each
// change of state or step, and returns the final row.
func (c *Client) Wait(ctx context.Context, app string, id int64, progress func(ledger.Deployment)) (ledger.Deployment, error) {
	var last string
	for {
		d, err := c.Deployment(ctx, app, id)
		if err != nil {
			return d, err
		}
		if key := string(d.State) + "/" + d.Step; key != last {
			last = key
			if progress != nil {
				progress(d)
			}
		}
		if d.State.Final() {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Follow follows app's deployment id with its steps until it ends, calling
// progress on each change of its state, its step or any of its steps (a
// step started, its progress, its end), and returns the final deployment.
func (c *Client) Follow(ctx context.Context, app string, id int64, progress func(DeploymentDetail)) (DeploymentDetail, error) {
	var last string
	for {
		d, err := c.DeploymentDetail(ctx, app, id)
		if err != nil {
			return d, err
		}
		if key := followKey(d); key != last {
			last = key
			if progress != nil {
				progress(d)
			}
		}
		if d.State.Final() {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// followKey is what Follow compares to tell a change.
func followKey(d DeploymentDetail) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s", d.State, d.Step)
	for _, s := range d.Steps {
		fmt.Fprintf(&b, "|%d %s %s %d", s.ID, s.State, s.Message, s.Finished.UnixNano())
	}
	return b.String()
}
