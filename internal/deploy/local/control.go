package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// An environment's supervisor answers on a unix socket in its directory:
//
//	GET  /status  deploy.Status
//	GET  /spec    the deploy.Spec it serves (404 when none)
//	GET  /debug/goroutines  {"goroutines": N}, for leak checks (Goroutines)
//	POST /apply   applyRequest; 200, or 409 with a deploy.RolloutError
//	POST /stop    stops every replica and the load balancer, then exits
//	POST /release releaseRequest; runs a release command, answers a
//	              releaseResult once it has ended (release.go)
const socketName = "ctl.sock"

// maxSocketPath is the longest path a unix socket address holds (sun_path
// is 108 bytes with its NUL). A longer socket path is reached through the
// /proc/self/fd link of its directory, which is short whatever the
// directory's own path: data directories, app and environment names are
// not limited by it.
const maxSocketPath = 107

// socketAddr returns an address for the unix socket at path that fits a
// socket address, and a func to call once the address is no longer used
// (bound sockets are unlinked through it when they close).
func socketAddr(path string) (addr string, done func(), err error) {
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), func() { dir.Close() }, nil
}

// dialSocket connects to the unix socket at path, however long the path.
func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	addr, done, err := socketAddr(path)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: err}
	}
	defer done()
	var d net.Dialer
	return d.DialContext(ctx, "unix", addr)
}

type applyRequest struct {
	Spec  deploy.Spec `json:"spec"`
	Image imageFiles  `json:"image"`
	// Secrets are the values of Spec.Secrets, read by the controller. The
	// supervisor keeps them in memory only.
	Secrets map[string]string `json:"secrets,omitempty"`
}

type controlError struct {
	Error   string               `json:"error"`
	Rollout *deploy.RolloutError `json:"rollout,omitempty"`
}

// runSupervisor runs the supervisor of the environment whose directory is
// dir until it is told to stop, gets SIGTERM, or its directory is removed.
func runSupervisor(ctx context.Context, dir string, logger *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	// A signal stops the replicas through shutdown, which drains them
	// first: they do not end with ctx.
	s := newSupervisor(context.WithoutCancel(ctx), dir, exe, supervisorClock(), logger)
	s.isolation = deploy.IsolationProcess
	noSandbox := os.Getenv(envNoSandbox) == "1"
	os.Unsetenv(envNoSandbox)
	if os.Geteuid() == 0 && !noSandbox {
		s.setUpSandbox(exe)
		if s.cgroups != nil {
			defer s.cgroups.removeAll()
		}
	}
	sock := filepath.Join(dir, socketName)
	os.Remove(sock)
	addr, closeAddr, err := socketAddr(sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer closeAddr()
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	pidFile := filepath.Join(dir, "supervisor.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	stopped := make(chan struct{})
	var stopOnce sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.status())
	})
	mux.HandleFunc("GET /spec", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		cur := s.current
		s.mu.Unlock()
		if cur == nil {
			writeJSON(w, http.StatusNotFound, controlError{Error: "nothing served"})
			return
		}
		writeJSON(w, http.StatusOK, cur.spec)
	})
	mux.HandleFunc("POST /apply", func(w http.ResponseWriter, r *http.Request) {
		var req applyRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, controlError{Error: "decode apply request: " + err.Error()})
			return
		}
		// The rollout goes on even when the caller goes away: a
		// controller restarting in the middle finds it done.
		err := s.apply(req.Spec, req.Image, req.Secrets)
		var re *deploy.RolloutError
		switch {
		case errors.As(err, &re):
			writeJSON(w, http.StatusConflict, controlError{Error: re.Error(), Rollout: re})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, controlError{Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, s.status())
		}
	})
	mux.HandleFunc("GET /debug/goroutines", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"goroutines": goruntime.NumGoroutine()})
	})
	mux.HandleFunc("POST /release", s.handleRelease)
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		s.shutdown()
		// No new requests from here on: a caller that asks next finds no
		// supervisor.
		ln.Close()
		writeJSON(w, http.StatusOK, struct{}{})
		stopOnce.Do(func() { close(stopped) })
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	logger.Info("supervisor started", "dir", dir, "isolation", s.isolation)

	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-t.C:
				if _, err := os.Stat(sock); err != nil {
					close(gone)
					return
				}
			}
		}
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		logger.Info("signalled: stopping replicas")
		s.shutdown()
	case <-gone:
		logger.Info("environment directory removed: stopping replicas")
		s.shutdown()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	os.Remove(sock)
	os.Remove(pidFile)
	return nil
}

// setUpSandbox checks whether replicas can be sandboxed here (a probe
// sandbox) and makes the environment's cgroups; where they cannot, they
// run as plain processes, and without cgroups, without limits.
func (s *supervisor) setUpSandbox(exe string) {
	ids, err := replicaIDMap()
	if err == nil {
		err = probeSandbox(exe, filepath.Join(s.dir, ".sandbox-probe"), ids)
	}
	if err != nil {
		s.logger.Warn("replicas run as plain processes: a sandbox cannot be set up here", "err", err)
		return
	}
	s.isolation, s.ids = deploy.IsolationSandbox, ids
	cg, err := newCgroupRoot(cgroupName(s.dir))
	if err != nil {
		s.logger.Warn("replicas run without memory, CPU and process limits: cgroups are not available", "err", err)
		return
	}
	s.cgroups = cg
	s.logger.Info("replicas run in a sandbox", "uids", fmt.Sprintf("%d-%d", ids.UID, ids.UID+idMapSize-1), "cgroups", cg.version())
}

// cgroupName is the name of the cgroup of the environment whose directory
// is dir: its name and a hash of the directory, which tells two apps'
// environments (or two data directories) apart.
func cgroupName(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return "slipway-" + filepath.Base(dir) + "-" + hex.EncodeToString(h[:4])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// errNoSupervisor means the environment's supervisor does not answer.
var errNoSupervisor = errors.New("supervisor not running")

// errUnknownRequest is what a supervisor answers to a request it has no
// handler for: one that an older slipway started, before the request
// existed.
var errUnknownRequest = errors.New("the supervisor does not know this request")

// control is the controller's end of a supervisor's socket.
type control struct {
	sock string
	c    *http.Client
}

func newControl(dir string) *control {
	sock := filepath.Join(dir, socketName)
	return &control{sock: sock, c: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialSocket(ctx, sock)
		},
		DisableKeepAlives: true,
	}}}
}

func (c *control) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://supervisor"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w (%s)", errNoSupervisor, c.sock)
		}
		return fmt.Errorf("supervisor %s %s: %w: %w", method, path, deploy.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ce controlError
		if err := json.NewDecoder(resp.Body).Decode(&ce); err != nil {
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				// Every handler answers JSON; the mux's plain text
				// means no handler has this route.
				return fmt.Errorf("supervisor %s %s: %s: %w", method, path, resp.Status, errUnknownRequest)
			}
			return fmt.Errorf("supervisor %s %s: %s", method, path, resp.Status)
		}
		if ce.Rollout != nil {
			return ce.Rollout
		}
		if resp.StatusCode == http.StatusNotFound {
			return deploy.ErrNotDeployed
		}
		return errors.New(ce.Error)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
