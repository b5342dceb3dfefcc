package api

import (
	"context"
	"net/http"

	"slipway.dev/slipway/internal/gc"
)

// Collector is an App whose images can be collected (docs/gc.md).
type Collector interface {
	GC(ctx context.Context, dryRun bool) (gc.Report, error)
}

// GCRequest is the body of POST /api/v1/apps/{app}/gc.
type GCRequest struct {
	// DryRun says what would be deleted, and deletes nothing.
	DryRun bool `json:"dryRun"`
}

func (s *Server) routeGC() {
	s.route("POST /gc", true, s.collect)
}

func (s *Server) collect(w http.ResponseWriter, r *http.Request, a App) error {
	var req GCRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	c, ok := a.(Collector)
	if !ok {
		return &Error{Status: http.StatusNotImplemented, Code: CodeConflict, Message: "this controller does not collect images"}
	}
	rep, err := c.GC(r.Context(), req.DryRun)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// GC collects the app's images, or with dryRun says what it would do.
func (c *Client) GC(ctx context.Context, app string, dryRun bool) (gc.Report, error) {
	var rep gc.Report
	err := c.do(ctx, "POST", appPath(app, "/gc"), GCRequest{DryRun: dryRun}, &rep)
	return rep, err
}
