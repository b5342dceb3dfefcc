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

// Status returns what runs where.
func (c *Client) Status(ctx context.Context) (pipeline.Status, error) {
	var st pipeline.Status
	err := c.do(ctx, http.MethodGet, "/api/v1/status", nil, &st)
	return st, err
}

// History returns the newest deployments of env (of all environments, and
// the builds, when env is empty).
func (c *Client) History(ctx context.Context, env string, limit int) (History, error) {
	q := url.Values{}
	if env != "" {
		q.Set("env", env)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var h History
	err := c.do(ctx, http.MethodGet, "/api/v1/history?"+q.Encode(), nil, &h)
	return h, err
}

// Diff returns the commits from runs and to does not.
func (c *Client) Diff(ctx context.Context, from, to string) ([]pipeline.Commit, error) {
	q := url.Values{"from": {from}, "to": {to}}
	var d Diff
	err := c.do(ctx, http.MethodGet, "/api/v1/diff?"+q.Encode(), nil, &d)
	return d.Commits, err
}

// Deployment returns one deployment.
func (c *Client) Deployment(ctx context.Context, id int64) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodGet, "/api/v1/deployments/"+strconv.FormatInt(id, 10), nil, &d)
	return d, err
}

// Release starts a release.
func (c *Client) Release(ctx context.Context, req ReleaseRequest) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, "/api/v1/releases", req, &d)
	return d, err
}

// Rollback starts a rollback.
func (c *Client) Rollback(ctx context.Context, target string) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, "/api/v1/rollbacks", RollbackRequest{Target: target}, &d)
	return d, err
}

// Scale starts a scale change.
func (c *Client) Scale(ctx context.Context, env string, replicas int) (ledger.Deployment, error) {
	var d ledger.Deployment
	err := c.do(ctx, http.MethodPost, "/api/v1/scale", ScaleRequest{Env: env, Replicas: replicas}, &d)
	return d, err
}

// Logs copies env's logs to w; with follow, until ctx ends.
func (c *Client) Logs(ctx context.Context, env string, follow bool, w io.Writer) error {
	path := "/api/v1/logs/" + url.PathEscape(env)
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

// Wait follows deployment id until it ends, calling progress on each change
// of state or step, and returns the final row.
func (c *Client) Wait(ctx context.Context, id int64, progress func(ledger.Deployment)) (ledger.Deployment, error) {
	var last string
	for {
		d, err := c.Deployment(ctx, id)
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
