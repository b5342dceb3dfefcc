// Package registry is slipway's side of OCI registries: the registry
// embedded in slipway (the CNCF distribution library, files on disk), and a
// client for any registry (push, tag, list tags, resolve and pull digests).
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the storage the embedded registry uses
	"github.com/sirupsen/logrus"
)

// DefaultAddr is where the embedded registry listens unless told otherwise.
const DefaultAddr = "127.0.0.1:5000"

// StorageDir is the embedded registry's directory inside slipway's data
// directory.
const StorageDir = "registry"

// Embedded is the registry embedded in slipway: an http.Handler over a
// directory, and optionally the server serving it on a listener.
type Embedded struct {
	app *handlers.App
	dir string
	// gate holds requests that write while Sweep runs (gc.go).
	gate sync.RWMutex

	mu  sync.Mutex
	srv *http.Server
}

// NewEmbedded returns the embedded registry storing its files under dir.
// Its log lines go to logger (warnings and errors as they are, the rest at
// debug level); the library's tracing is off unless OTEL_TRACES_EXPORTER
// says otherwise.
func NewEmbedded(ctx context.Context, dir string, logger *slog.Logger) (e *Embedded, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded registry storage: %w", err)
	}
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	routeLogrus(logger)

	secret := make([]byte, 16)
	rand.Read(secret)
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem":  configuration.Parameters{"rootdirectory": dir},
			"delete":      configuration.Parameters{"enabled": true},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	cfg.Log.AccessLog.Disabled = true
	cfg.Log.Level = "info"
	cfg.Catalog.MaxEntries = 1000

	// The library panics on configuration it cannot use.
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("start embedded registry on %s: %v", dir, r)
		}
	}()
	return &Embedded{app: handlers.NewApp(ctx, cfg), dir: dir}, nil
}

// ServeHTTP serves the registry API (/v2/…).
// Requests that write wait while a sweep runs (Sweep).
func (e *Embedded) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if writes(r) {
		e.gate.RLock()
		defer e.gate.RUnlock()
	}
	e.app.ServeHTTP(w, r)
}

// Serve serves the registry on l until Close. It returns nil after Close.
func (e *Embedded) Serve(l net.Listener) error {
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 30 * time.Second}
	e.mu.Lock()
	if e.srv != nil {
		e.mu.Unlock()
		return errors.New("embedded registry: already serving")
	}
	e.srv = srv
	e.mu.Unlock()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("embedded registry on %s: %w", l.Addr(), err)
	}
	return nil
}

// Close stops serving, waiting up to ctx for requests in flight, and stops
// the registry.
func (e *Embedded) Close(ctx context.Context) error {
	e.mu.Lock()
	srv := e.srv
	e.mu.Unlock()
	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	}
	return errors.Join(err, e.app.Shutdown())
}

// Listen starts the embedded registry for dir on addr and serves it in the
// background until Close. It is what a slipway command that needs the
// registry for its own run calls.
func Listen(ctx context.Context, addr, dir string, logger *slog.Logger) (*Embedded, net.Listener, error) {
	e, err := NewEmbedded(ctx, dir, logger)
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		e.app.Shutdown()
		return nil, nil, fmt.Errorf("embedded registry: listen on %s (another registry or slipway may be using it; choose another with --registry-addr): %w", addr, err)
	}
	go func() {
		if err := e.Serve(l); err != nil {
			logger.Error("embedded registry stopped", "err", err)
		}
	}()
	return e, l, nil
}

// logrusHook forwards the distribution library's logrus lines to slog.
type logrusHook struct{}

var hookLogger atomic.Pointer[slog.Logger]
var hookOnce sync.Once

// routeLogrus sends logrus (used by the distribution library) to logger.
// logrus is process-wide: the most recent logger wins.
func routeLogrus(logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hookLogger.Store(logger.With("component", "registry"))
	hookOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.InfoLevel)
		logrus.AddHook(logrusHook{})
	})
}

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

// clientError reports whether a log entry is about a request answered
// with a 4xx status.
func clientError(en *logrus.Entry) bool {
	switch st := en.Data["http.response.status"].(type) {
	case int:
		return st >= 400 && st < 500
	}
	return false
}

func (logrusHook) Fire(en *logrus.Entry) error {
	l := hookLogger.Load()
	if l == nil {
		return nil
	}
	level := slog.LevelDebug
	switch {
	case clientError(en):
		// A 404 for a tag or blob that is not there yet is how clients
		// ask whether it is: not a problem of the registry.
	case en.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case en.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	}
	attrs := make([]any, 0, 2*len(en.Data))
	for k, v := range en.Data {
		if k == "go.version" || k == "instance.id" || k == "service" {
			continue
		}
		attrs = append(attrs, k, v)
	}
	l.Log(context.Background(), level, en.Message, attrs...)
	return nil
}
