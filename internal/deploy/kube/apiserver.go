package kube

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	"slipway.dev/slipway/internal/deploy"
)

// apiServerWatch is the transport of every request to the API server: when
// the server stops answering (down, restarting, the network cut), it says
// so once in the log and in the progress of the rollout that waits for it
// (client-go's watches keep trying again), and once when it answers again.
type apiServerWatch struct {
	next   http.RoundTripper
	server string
	log    *slog.Logger
	down   atomic.Bool
}

// watchAPIServer makes rc's requests go through an apiServerWatch.
func watchAPIServer(rc *rest.Config, log *slog.Logger) {
	server := rc.Host
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return &apiServerWatch{next: next, server: server, log: log}
	})
}

func (a *apiServerWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	ctx := req.Context()
	switch {
	case err != nil && ctx.Err() == nil:
		if a.down.CompareAndSwap(false, true) {
			a.log.Warn("Kubernetes API server unreachable; waiting for it", "server", a.server, "err", err)
		}
		deploy.ReportProgress(ctx, "Kubernetes API server "+a.server+" unreachable, waiting for it: "+err.Error())
	case err == nil && a.down.CompareAndSwap(true, false):
		a.log.Info("Kubernetes API server answers again", "server", a.server)
		deploy.ReportProgress(ctx, "Kubernetes API server "+a.server+" answers again")
	}
	return resp, err
}

// unreachable reports whether err is a request the API server did not
// answer (refused, cut, timed out), not one it answered with an error.
func unreachable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return false
	}
	var ue *url.Error
	return errors.As(err, &ue)
}

// unreachableBackoff bounds the wait between two tries of a request the
// API server did not answer.
const unreachableBackoff = 10 * time.Second

// whileUnreachable runs fn until it returns anything but an unreachable
// API server, or ctx ends (then fn's last error). apiServerWatch says in
// the log and the rollout's progress that the server is waited for.
func whileUnreachable(ctx context.Context, fn func() error) error {
	backoff := 500 * time.Millisecond
	for {
		err := fn()
		if err == nil || ctx.Err() != nil || !unreachable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, unreachableBackoff)
	}
}
