package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"slipway.dev/slipway/internal/crashpoint"
	"slipway.dev/slipway/internal/deploy"
)

// revision is one version of an environment's replicas: a spec and the
// image files it runs from.
type revision struct {
	spec  deploy.Spec
	image imageFiles
	id    string
	// secrets are the values of spec.Secrets, held in memory only.
	secrets map[string]string
}

func newRevision(spec deploy.Spec, img imageFiles, secrets map[string]string) *revision {
	h := sha256.New()
	env := slices.Sorted(maps.Keys(spec.Env))
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00", spec.App, spec.Image, spec.Commit, spec.Version,
		spec.ReadinessPath, spec.LivenessPath, spec.Port)
	for _, k := range env {
		fmt.Fprintf(h, "%s=%s\x00", k, spec.Env[k])
	}
	// Limits and secrets (their values too: a new value is a new
	// revision) count only when set, so that a revision's id stays what
	// an older supervisor made it.
	if r := spec.Resources; r != (deploy.Resources{}) {
		fmt.Fprintf(h, "resources %d %d %d\x00", r.MemoryBytes, r.MilliCPU, r.Pids)
	}
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		fmt.Fprintf(h, "secret %s=%s\x00", k, secrets[k])
	}
	return &revision{spec: spec, image: img, id: hex.EncodeToString(h.Sum(nil))[:7], secrets: secrets}
}

// supervisor runs one environment: its replicas and its load balancer.
type supervisor struct {
	dir       string
	exe       string
	logger    *slog.Logger
	isolation deploy.Isolation
	// ids is the host's range of the replicas' user namespaces, and
	// cgroups where their limits are set (nil: not limited), in a
	// sandbox.
	ids     idMap
	cgroups *cgroupRoot
	clock   clock
	lb      *balancer
	// host is what each replica's supervision gets from the supervisor.
	host *replicaHost
	// ctx is what replicas run under: they stop when it ends, or on
	// their own stop.
	ctx context.Context

	// applyMu serializes rollouts and guards the listener fields; lbLn
	// and lbSrv are also written under mu, for status.
	applyMu sync.Mutex
	lbLn    net.Listener
	lbAddr  string
	lbSrv   *frontend

	mu       sync.Mutex
	replicas []*replica
	current  *revision
	target   *revision
	since    time.Time
	changed  chan struct{}
	seq      int
	retiring sync.WaitGroup
}

// newSupervisor returns the supervisor of the environment whose directory
// is dir; its replicas run under ctx and go by clk.
func newSupervisor(ctx context.Context, dir, exe string, clk clock, logger *slog.Logger) *supervisor {
	s := &supervisor{
		dir:     dir,
		exe:     exe,
		logger:  logger,
		clock:   clk,
		ctx:     ctx,
		changed: make(chan struct{}),
	}
	s.host = &replicaHost{
		clock:  clk,
		logger: logger,
		probe: &http.Client{
			Timeout: time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 2,
				DisableKeepAlives:   false,
				IdleConnTimeout:     5 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		command:  s.command,
		started:  s.started,
		finished: s.finished,
		update:   s.update,
	}
	s.lb = newBalancer(filepath.Base(dir), clk, s.eject)
	return s
}

// update applies f to replica states under s.mu, and announces the change
// when f says so.
func (s *supervisor) update(f func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f() {
		s.notify()
	}
}

// notify wakes whoever waits for a change of replica states, and tells the
// balancer which replicas are ready; s.mu is held.
func (s *supervisor) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
	for _, r := range s.replicas {
		s.lb.setReady(r.backend, r.ready)
	}
}

// eject marks the replica named unready after the balancer failed to reach
// it; its next passing readiness check puts it back.
func (s *supervisor) eject(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.replicas, func(r *replica) bool { return r.name == name })
	if i < 0 {
		return // retired meanwhile
	}
	if r := s.replicas[i]; r.ready {
		r.ready = false
		r.state = "unready"
		r.message = "ejected: " + err.Error()
		r.since = s.clock.Wall()
		s.notify()
	}
}

// listen (re)binds the load balancer to spec's address and applies its
// front-end settings.
func (s *supervisor) listen(spec deploy.Spec) error {
	addr, fe := spec.ListenAddr, spec.Frontend
	s.lb.setTrusted(fe.TrustedProxies)
	if s.lbLn != nil && addr == s.lbAddr && sameTLS(s.lbLn, fe.TLS) {
		s.lbSrv.setLimits(fe)
		return nil
	}
	if err := s.releaseForTLS(addr, fe); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("load balancer: listen on %s: %w (choose another listen address, or stop what uses it)", addr, err)
	}
	if ln, err = s.withTLS(ln, fe); err != nil {
		return err
	}
	srv := newFrontend(ln, s.lb, fe)
	old := s.lbSrv
	s.mu.Lock()
	s.lbLn, s.lbSrv = ln, srv
	s.mu.Unlock()
	s.lbAddr = addr
	if old != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			old.Shutdown(ctx)
		}()
	}
	return nil
}

// apply brings the environment to spec and returns when it is there, or a
// *deploy.RolloutError after restoring the previous revision.
func (s *supervisor) apply(spec deploy.Spec, img imageFiles, secrets map[string]string) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := s.listen(spec); err != nil {
		return err
	}
	rev := newRevision(spec, img, secrets)
	s.mu.Lock()
	prev := s.current
	s.target = rev
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.target = nil
		s.mu.Unlock()
	}()
	s.logger.Info("apply", "version", spec.Version, "revision", rev.id, "replicas", spec.Replicas, "cause", spec.Cause)
	if spec.Replicas == 0 {
		// Stopping: new requests are told so at once, while the
		// replicas finish the ones they have.
		s.lb.setStopped(spec.App)
	}
	rerr := s.converge(rev, spec.Replicas, spec.Strategy)
	if rerr == nil {
		s.mu.Lock()
		if prev == nil || prev.id != rev.id || stopped(prev.spec) != stopped(spec) {
			s.since = s.clock.Wall()
		}
		s.current = rev
		s.mu.Unlock()
		if !stopped(spec) {
			s.lb.setStopped("")
		}
		crashpoint.Hit("supervisor.serving")
		return s.saveSpec(spec)
	}
	s.logger.Warn("rollout failed", "version", spec.Version, "reason", rerr.Reason)
	s.retireAll(func(r *replica) bool { return prev == nil || r.rev.id != prev.id })
	if prev != nil {
		if err := s.converge(prev, prev.spec.Replicas, prev.spec.Strategy); err != nil {
			rerr.Reason += "; restoring the previous version also failed: " + err.Error()
		}
	}
	return rerr
}

// stopped reports whether spec stops its environment.
func stopped(spec deploy.Spec) bool { return spec.Replicas == 0 }

func (s *supervisor) saveSpec(spec deploy.Spec) error {
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "serving.json"), b, 0o644)
}

// converge runs replicas of rev until n of them are ready and no other
// replica is left, within the strategy's surge and unavailability limits:
// it plans from the replicas as they are (planRollout), acts on the plan,
// and waits for a replica to change or for the plan's next look.
func (s *supervisor) converge(rev *revision, n int, st deploy.Strategy) *deploy.RolloutError {
	for {
		s.mu.Lock()
		now := s.clock.Now()
		views := make([]replicaView, 0, len(s.replicas))
		byName := make(map[string]*replica, len(s.replicas))
		for _, r := range s.replicas {
			views = append(views, r.view())
			byName[r.name] = r
		}
		p := planRollout(rev.id, n, st, views, now)
		if p.fail != nil {
			r := byName[p.fail.replica]
			s.mu.Unlock()
			return s.rolloutError(rev, r, p.fail.reason)
		}
		for _, name := range p.retire {
			s.retire(byName[name])
		}
		if p.done {
			s.mu.Unlock()
			s.retiring.Wait()
			return nil
		}
		for range p.start {
			if _, err := s.start(rev); err != nil {
				s.mu.Unlock()
				return &deploy.RolloutError{Environment: rev.spec.Environment, Version: rev.spec.Version, Reason: err.Error()}
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.clock.After(p.next.Sub(s.clock.Now())):
		}
	}
}

func (s *supervisor) rolloutError(rev *revision, r *replica, reason string) *deploy.RolloutError {
	return &deploy.RolloutError{
		Environment: rev.spec.Environment,
		Version:     rev.spec.Version,
		Replica:     r.name,
		Reason:      reason,
		LastLogs:    lastLines(r.logPath, 20),
	}
}

// start creates a replica of rev and starts supervising it; s.mu is held.
func (s *supervisor) start(rev *revision) (*replica, error) {
	port, err := replicaPort()
	if err != nil {
		return nil, fmt.Errorf("find a free port for a replica: %w", err)
	}
	s.seq++
	name := fmt.Sprintf("%s-%s-%d", rev.spec.Environment, rev.id[:5], s.seq)
	logs := filepath.Join(s.dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	inUse := map[string]bool{name: true}
	for _, r := range s.replicas {
		inUse[r.name] = true
	}
	pruneLogs(logs, inUse, 20)
	ctx, stop := context.WithCancel(s.ctx)
	now := s.clock.Now()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	r := &replica{
		name:    name,
		rev:     rev,
		port:    port,
		addr:    addr,
		backend: s.lb.add(name, addr, rev.spec.Commit),
		logPath: filepath.Join(logs, name+".log"),
		created: now,
		host:    s.host,
		stop:    stop,
		done:    make(chan struct{}),
		state:   "starting",
		since:   s.clock.Wall(),
	}
	s.replicas = append(s.replicas, r)
	go r.run(ctx)
	s.notify()
	return r, nil
}

// retire takes r out of the pool and stops it once its requests are done;
// s.mu is held.
func (s *supervisor) retire(r *replica) {
	if !s.lb.drain(r.backend) {
		return // retiring already
	}
	r.state = "draining"
	r.since = s.clock.Wall()
	s.notify()
	crashpoint.Hit("supervisor.replica.drain")
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		s.lb.waitDrained(r.backend, r.rev.spec.Strategy.TerminationGracePeriod)
		r.stop()
		<-r.done
		crashpoint.Hit("supervisor.replica.stopped")
		s.mu.Lock()
		s.replicas = slices.DeleteFunc(s.replicas, func(x *replica) bool { return x == r })
		s.notify()
		s.mu.Unlock()
		s.lb.remove(r.backend)
	}()
}

// retireAll retires the replicas that match and waits until they stopped.
func (s *supervisor) retireAll(match func(*replica) bool) {
	s.mu.Lock()
	for _, r := range s.replicas {
		if match(r) {
			s.retire(r)
		}
	}
	s.mu.Unlock()
	s.retiring.Wait()
}

// command builds the process of one replica.
func (s *supervisor) command(r *replica, out io.Writer) (*exec.Cmd, error) {
	img := r.rev.image
	argv := append(slices.Clone(img.Entrypoint), img.Cmd...)
	if r.argv != nil {
		argv = slices.Clone(r.argv)
	}
	dataDir := hostDataDir(s.dir)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	uid, gid, err := imageUser(img.Rootfs, img.User)
	if err != nil {
		return nil, err
	}
	envList := s.replicaEnv(r)
	workdir := img.WorkingDir
	if workdir == "" {
		workdir = "/"
	}
	var cmd *exec.Cmd
	if s.isolation == deploy.IsolationSandbox {
		cmd, err = s.sandboxCommand(r, sandboxConfig{Rootfs: img.Rootfs, DataDir: dataDir, Argv: argv, Env: envList,
			Dir: workdir, UID: uid, GID: gid, IDMap: s.ids})
		if err != nil {
			return nil, err
		}
	} else {
		if uid != 0 && os.Geteuid() == 0 {
			os.Chown(dataDir, uid, gid)
		}
		bin, err := lookPathIn(img.Rootfs, argv[0], envList)
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(bin, argv[1:]...)
		cmd.Args[0] = argv[0]
		cmd.Env = envList
		cmd.Dir = filepath.Join(img.Rootfs, workdir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if uid != 0 && os.Geteuid() == 0 {
			cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		}
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	return cmd, nil
}

// replicaEnv is the environment of r's process: the image's, then (later
// wins) HOST, the spec's Env, its secrets' values, and what the runtime
// gives each replica.
func (s *supervisor) replicaEnv(r *replica) []string {
	img, spec := r.rev.image, r.rev.spec
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range img.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	// Replicas are reached through the load balancer only.
	set("HOST", "127.0.0.1")
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		set(k, spec.Env[k])
	}
	for _, k := range slices.Sorted(maps.Keys(r.rev.secrets)) {
		set(k, r.rev.secrets[k])
	}
	if r.port != 0 { // a release command listens nowhere
		set("PORT", strconv.Itoa(r.port))
	}
	set("DATA_DIR", replicaDataDir(s.dir, s.isolation))
	set("SLIPWAY_ENVIRONMENT", spec.Environment)
	set("SLIPWAY_REPLICA", r.name)
	envList := make([]string, 0, len(order))
	for _, k := range order {
		envList = append(envList, k+"="+env[k])
	}
	return envList
}

// status reports what the environment serves.
func (s *supervisor) status() deploy.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := deploy.Status{Environment: filepath.Base(s.dir), Isolation: s.isolation, Since: s.since}
	if s.lbLn != nil {
		st.URL = lbURL(s.lbLn)
	}
	desired := s.current
	if s.target != nil {
		desired = s.target
	}
	if s.current != nil {
		sp := s.current.spec
		st.Image, st.Digest, st.Commit, st.Version = sp.Image, sp.Digest(), sp.Commit, sp.Version
	}
	if desired != nil {
		st.Replicas.Desired = desired.spec.Replicas
	}
	var problems []string
	for _, r := range s.replicas {
		draining := r.backend.draining.Load()
		st.Instances = append(st.Instances, deploy.Replica{
			Name: r.name, Version: r.rev.spec.Version, Commit: r.rev.spec.Commit, State: r.state,
			Ready: r.ready && !draining, Restarts: r.restarts, Address: r.addr, PID: r.pid,
			Since: r.since, Message: r.message, LastExit: r.lastExit,
		})
		if draining {
			continue
		}
		if r.ready {
			st.Replicas.Ready++
		}
		if desired != nil && r.rev.id == desired.id {
			st.Replicas.Updated++
		}
		if r.state == "crash-looping" || (!r.ready && r.everReady) {
			problems = append(problems, fmt.Sprintf("replica %s is %s: %s", r.name, r.state, r.message))
		}
	}
	if s.target != nil && s.current != nil && s.target.id != s.current.id {
		problems = append([]string{fmt.Sprintf("rolling out %s: %d of %d replicas updated",
			s.target.spec.Version, st.Replicas.Updated, s.target.spec.Replicas)}, problems...)
	}
	if s.lbSrv != nil {
		if p := s.lbSrv.problem(); p != "" {
			problems = append([]string{p}, problems...)
		}
	}
	st.Stopped = desired != nil && stopped(desired.spec)
	if st.Stopped {
		problems = append(problems, fmt.Sprintf("stopped: its address answers 503; slipway start %s starts it", st.Environment))
	}
	st.Healthy = s.current != nil && !st.Stopped && st.Replicas.Ready >= st.Replicas.Desired && len(problems) == 0
	st.Message = strings.Join(problems, "; ")
	return st
}

func urlHost(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if tcp.IP.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			return net.JoinHostPort(h, strconv.Itoa(tcp.Port))
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
	}
	return tcp.String()
}

// shutdown stops every replica and the load balancer.
func (s *supervisor) shutdown() {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.retireAll(func(*replica) bool { return true })
	if s.lbSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.lbSrv.Shutdown(ctx)
	}
	s.mu.Lock()
	s.current = nil
	s.mu.Unlock()
}
