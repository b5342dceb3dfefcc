//go:build integration

package local

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
)

// TestFrontendUnderProbes measures what denial-of-service probes do to the
// load balancer's front end with its default limits: 4 birthday-app
// replicas serve a steady load of GET /hello/alice while probes run one
// after another (aborted request bodies, more idle connections than the
// connection cap, huge request heads, slowloris), each for a phase of its
// own after a quiet baseline. For each phase it prints the normal load's
// outcome and latency and the supervisor's memory, threads and file
// descriptors, and what each probe saw. It asserts nothing;
// bench/frontend-dos runs it.
func TestFrontendUnderProbes(t *testing.T) {
	if os.Getenv("SLIPWAY_BENCH") != "1" {
		t.Skip("benchmark: runs with SLIPWAY_BENCH=1 (bench/frontend-dos)")
	}
	baseline := envDurationOr(t, "BENCH_BASELINE", 20*time.Second)
	phaseLen := envDurationOr(t, "BENCH_PHASE", 20*time.Second)
	rate := envPositive(t, "BENCH_RATE", 300)
	clients := envPositive(t, "BENCH_CLIENTS", 32)
	idleConns := envPositive(t, "BENCH_IDLE_CONNS", 20000)
	bigHeader := int64(envPositive(t, "BENCH_BIG_HEADER_MIB", 200)) << 20
	slowConns := envPositive(t, "BENCH_SLOW_CONNS", 300)
	slowEvery := envDurationOr(t, "BENCH_SLOW_EVERY", 3*time.Second)

	// The probe opens twice as many connections as the front end keeps
	// (it closes the refused ones at once), more than the soft limit of
	// many machines allows. Go raises its own soft limit to the hard one
	// at start (to the hard one minus one since Go 1.26), but gives child
	// processes the original soft limit back unless the program set the
	// limit itself: Setrlimit here also makes the supervisor (a child)
	// inherit it. Raising the hard limit needs CAP_SYS_RESOURCE; without
	// it the hard limit has to do.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	orig := lim
	want := max(lim.Max, uint64(idleConns)+8192)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err != nil {
		t.Logf("cannot raise RLIMIT_NOFILE's hard limit from %d to %d (%v): keeping %d", lim.Max, want, err, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max}); err != nil {
			t.Fatal(err)
		}
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if need := uint64(idleConns/2 + 4096); lim.Cur < need {
		t.Fatalf("RLIMIT_NOFILE %d: the idle-connection probe needs about %d; run as root or lower BENCH_IDLE_CONNS", lim.Cur, need)
	}
	t.Logf("RLIMIT_NOFILE was soft %d, hard %d; now %d", orig.Cur, orig.Max, lim.Cur)

	v1r, _, _ := builtBirthdayApp(t)
	dir := shortTempDir(t)
	be := newTestBackend(t, dir)
	if err := be.Apply(t.Context(), birthdaySpec("bench", v1r, 4)); err != nil {
		t.Fatal(err)
	}
	st, err := be.Status(t.Context(), "bench")
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(st.URL, "http://")
	pid := readPID(t, filepath.Join(dir, "envs", "bench", "supervisor.pid"))
	logPath := filepath.Join(dir, "envs", "bench", "supervisor.log")
	if keep := os.Getenv("BENCH_SUPERVISOR_LOG"); keep != "" {
		// Runs before the backend's cleanup stops the supervisor.
		t.Cleanup(func() {
			b, _ := os.ReadFile(logPath)
			if err := os.WriteFile(keep, b, 0o644); err != nil {
				t.Error(err)
			}
		})
	}

	url := st.URL + "/hello/alice"
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"dateOfBirth":"1990-06-15"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT /hello/alice: %s", resp.Status)
	}
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	wantBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /hello/alice: %s %s", resp.Status, wantBody)
	}

	limits := deploy.Spec{}.WithDefaults().Frontend
	t.Logf("front end limits (defaults): head %d bytes in %s, body %s between reads, write %s, idle %s, %d connections",
		limits.MaxHeaderBytes, limits.HeaderTimeout, limits.BodyTimeout, limits.WriteTimeout, limits.IdleTimeout, limits.MaxConnections)
	t.Logf("RLIMIT_NOFILE: test process %s; supervisor (pid %d) %s", nofileLimit("self"), pid, nofileLimit(strconv.Itoa(pid)))
	t.Logf("normal load: %d keep-alive clients, %d GET /hello/alice per second; success is 200 with %q", clients, rate, bytes.TrimSpace(wantBody))

	l := startProbeLoad(url, wantBody, rate, clients)
	defer l.stop()
	mon := startProcMonitor(pid, be)
	defer mon.stop()

	var phases []*phaseStats
	logOff := sizeOf(logPath)
	t.Logf("load average at the start: %s", loadAverage())
	run := func(name string, d time.Duration, p dosProbe) {
		ps := &phaseStats{name: name, status: map[int]int{}}
		l.setPhase(ps)
		mon.setPhase(ps)
		ctx, cancel := context.WithCancel(t.Context())
		var finish func() string
		if p != nil {
			finish = p(ctx)
		}
		time.Sleep(d)
		ps.took = d
		ps.end = readProcStats(pid)
		ps.load = loadAverage()
		cancel()
		if finish != nil {
			ps.probe = finish()
		}
		ps.logLines, logOff = logSince(logPath, logOff)
		phases = append(phases, ps)
		l.mu.Lock()
		sum := ps.summary()
		l.mu.Unlock()
		t.Logf("phase %q done: %s", name, sum)
		if ps.probe != "" {
			t.Logf("  probe: %s", ps.probe)
		}
		mon.mu.Lock()
		var timeline []string
		for i := 0; i < len(ps.rss); i += 20 {
			timeline = append(timeline, fmt.Sprintf("%.0f", float64(ps.rss[i])/1024))
		}
		mon.mu.Unlock()
		t.Logf("  supervisor RSS every 2 s (MiB): %s", strings.Join(timeline, " "))
		for _, line := range ps.logLines {
			t.Logf("  supervisor log: %s", line)
		}
	}
	probes := strings.Fields(envOr("BENCH_PROBES", "aborted idle heads slowloris"))
	run("quiet baseline", baseline, nil)
	if slices.Contains(probes, "aborted") {
		run("aborted bodies, 10/s", phaseLen, abortedBodies(addr, 10))
		run("aborted bodies, 30/s", phaseLen, abortedBodies(addr, 30))
	}
	if slices.Contains(probes, "idle") {
		run(fmt.Sprintf("%d idle connections", idleConns), phaseLen, idleConnections(addr, idleConns))
	}
	if slices.Contains(probes, "heads") {
		run(fmt.Sprintf("4 clients × %d MiB head", bigHeader>>20), phaseLen, hugeHeads(addr, 4, bigHeader))
	}
	if slices.Contains(probes, "slowloris") {
		run(fmt.Sprintf("slowloris, %d conns", slowConns), phaseLen, slowloris(addr, slowConns, slowEvery))
	}
	run("quiet, after the probes", envDurationOr(t, "BENCH_AFTER", baseline), nil)
	l.stop()
	mon.stop()

	t.Logf("| phase | sent | req/s | succeeded | failed | success | p50 | p99 | RSS at end | max RSS (100 ms samples) | VmHWM | threads | fds | ready replicas (min) | load avg |")
	t.Logf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, ps := range phases {
		t.Logf("%s", ps.row())
	}
	for _, ps := range phases {
		if f := ps.failures(); f != "" {
			t.Logf("failures in %q: %s", ps.name, f)
		}
	}
}

// dosProbe starts a probe that runs until ctx ends; the function it returns
// waits for the probe's goroutines and connections to be done and says
// what the probe saw.
type dosProbe func(ctx context.Context) (finish func() string)

// abortedBodies opens perSecond connections a second, each sending a
// request whose body is shorter than it announces (by Content-Length, or a
// chunked body without its end), and closes it 100 ms later.
func abortedBodies(addr string, perSecond int) dosProbe {
	head := "Host: bench\r\nContent-Type: application/json\r\n"
	variants := []string{
		"POST /hello/probe HTTP/1.1\r\n" + head + "Content-Length: 1000\r\n\r\n{\"dateOfBirth\":",
		"PUT /hello/probe HTTP/1.1\r\n" + head + "Content-Length: 1000\r\n\r\n{\"dateOfBirth\":",
		"POST /hello/probe HTTP/1.1\r\n" + head + "Content-Length: 1048576\r\n\r\n" + strings.Repeat("a", 32<<10),
		"PUT /hello/probe HTTP/1.1\r\n" + head + "Content-Length: 1048576\r\n\r\n" + strings.Repeat("a", 100<<10),
		"POST /hello/probe HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n10\r\n{\"dateOfBirth\":\"\r\n",
		"PUT /hello/probe HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n400\r\n" + strings.Repeat("a", 100),
	}
	return func(ctx context.Context) func() string {
		var wg sync.WaitGroup
		var sent, dialErrs, answered atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / time.Duration(perSecond))
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				raw := variants[i%len(variants)]
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						dialErrs.Add(1)
						return
					}
					defer c.Close()
					io.WriteString(c, raw)
					sent.Add(1)
					c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
					if n, _ := c.Read(make([]byte, 1)); n > 0 {
						answered.Add(1) // answered before the client left
					}
				}()
			}
		}()
		return func() string {
			wg.Wait()
			return fmt.Sprintf("%d aborted requests sent (%d kinds in turn), %d answered within the 100 ms before the close, %d dials failed",
				sent.Load(), len(variants), answered.Load(), dialErrs.Load())
		}
	}
}

// idleConnections opens n connections that send nothing, from several
// loopback addresses (so as not to run out of ports), as fast as 64
// dialers go, and holds each until the phase ends or the front end answers
// or closes it.
func idleConnections(addr string, n int) dosProbe {
	return func(ctx context.Context) func() string {
		type outcome struct {
			dial, took time.Duration
			answer     string
			closed     bool // by the front end, before the phase ended
		}
		var (
			mu       sync.Mutex
			conns    []net.Conn
			outs     []outcome
			dialErrs []string
			nDialErr int
			readers  sync.WaitGroup
			dialers  sync.WaitGroup
		)
		next := make(chan int)
		for range 64 {
			dialers.Add(1)
			go func() {
				defer dialers.Done()
				for i := range next {
					d := net.Dialer{Timeout: 10 * time.Second,
						LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}
					start := time.Now()
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						if ctx.Err() != nil {
							continue // the phase ended
						}
						mu.Lock()
						nDialErr++
						if len(dialErrs) < 3 {
							dialErrs = append(dialErrs, err.Error())
						}
						mu.Unlock()
						continue
					}
					dialed := time.Since(start)
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
					readers.Add(1)
					go func() {
						defer readers.Done()
						buf := make([]byte, 256)
						var got []byte
						var first time.Duration
						for {
							k, err := c.Read(buf)
							if k > 0 && first == 0 {
								first = time.Since(start)
							}
							got = append(got, buf[:k]...)
							if err != nil {
								break
							}
						}
						c.Close() // as a client does when the server closes
						o := outcome{dial: dialed, answer: statusLineOf(got), closed: ctx.Err() == nil}
						if first == 0 {
							first = time.Since(start)
						}
						o.took = first
						mu.Lock()
						outs = append(outs, o)
						mu.Unlock()
					}()
				}
			}()
		}
		openStart := time.Now()
		var opened time.Duration
		openedDone := make(chan struct{})
		go func() {
			defer close(next)
			for i := range n {
				select {
				case next <- i:
				case <-ctx.Done():
					return
				}
			}
		}()
		go func() { dialers.Wait(); opened = time.Since(openStart); close(openedDone) }()
		return func() string {
			<-openedDone
			mu.Lock()
			open := conns
			mu.Unlock()
			for _, c := range open {
				c.Close()
			}
			readers.Wait()
			var held, refused503, refusedSilent, closedLater int
			var refuseTimes, dialTimes, laterTimes []time.Duration
			for _, o := range outs {
				dialTimes = append(dialTimes, o.dial)
				switch {
				case !o.closed:
					held++
				case strings.Contains(o.answer, " 503 "):
					refused503++
					refuseTimes = append(refuseTimes, o.took)
				case o.took < time.Second:
					refusedSilent++
					refuseTimes = append(refuseTimes, o.took)
				default:
					closedLater++
					laterTimes = append(laterTimes, o.took)
				}
			}
			s := fmt.Sprintf("%d connections tried in %s; %d dials failed %q; open and unanswered until the end of the phase (held, or still waiting to be accepted): %d; refused: %d with 503 and %d closed without an answer, refusal (dial to answer or close) p50 %s p99 %s max %s; dial p50 %s p99 %s",
				n, opened.Round(time.Millisecond), nDialErr, dialErrs, held, refused503, refusedSilent,
				nthOf(refuseTimes, 0.5), nthOf(refuseTimes, 0.99), nthOf(refuseTimes, 1),
				nthOf(dialTimes, 0.5), nthOf(dialTimes, 0.99))
			if closedLater > 0 {
				s += fmt.Sprintf("; closed by the front end after being held: %d (after p50 %s, min %s)",
					closedLater, nthOf(laterTimes, 0.5), nthOf(laterTimes, 0))
			}
			return s
		}
	}
}

// hugeHeads has clients each send a request whose head is one header of
// size bytes, in 64 KiB writes, again and again until the phase ends.
func hugeHeads(addr string, clients int, size int64) dosProbe {
	return func(ctx context.Context) func() string {
		var wg sync.WaitGroup
		var mu sync.Mutex
		answers := map[string]int{}
		var attempts int
		var took []time.Duration
		var taken []int64
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						mu.Lock()
						answers["dial: "+err.Error()]++
						mu.Unlock()
						time.Sleep(100 * time.Millisecond)
						continue
					}
					start := time.Now()
					answer := make(chan string, 1)
					go func() {
						br := bufio.NewReader(c)
						line, _ := br.ReadString('\n')
						answer <- strings.TrimSpace(line)
						io.Copy(io.Discard, br)
					}()
					sent, _ := io.WriteString(c, "GET /hello/alice HTTP/1.1\r\nHost: bench\r\nX-Big: ")
					total := int64(sent)
					for total < size && ctx.Err() == nil {
						k, err := c.Write(chunk[:min(int64(len(chunk)), size-total)])
						total += int64(k)
						if err != nil {
							break
						}
					}
					wait, late := 5*time.Second, "no answer within 5 s after the writes stopped"
					if ctx.Err() != nil && total < size {
						wait, late = 100*time.Millisecond, "still sending when the phase ended"
					}
					var line string
					select {
					case line = <-answer:
					case <-time.After(wait):
						line = late
					}
					c.Close()
					mu.Lock()
					attempts++
					if line == "" {
						line = "closed without an answer"
					}
					answers[line]++
					taken = append(taken, total)
					took = append(took, time.Since(start))
					mu.Unlock()
				}
			}()
		}
		return func() string {
			wg.Wait()
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(answers)) {
				parts = append(parts, fmt.Sprintf("%q ×%d", k, answers[k]))
			}
			return fmt.Sprintf("%d attempts by %d clients; answers: %s; bytes written before the front end cut the connection: p50 %.2f MiB, max %.2f MiB; time per attempt p50 %s p99 %s",
				attempts, clients, strings.Join(parts, ", "),
				float64(nthOf(taken, 0.5))/(1<<20), float64(nthOf(taken, 1))/(1<<20),
				nthOf(took, 0.5), nthOf(took, 0.99))
		}
	}
}

// slowloris keeps n connections open that send a request line and then one
// byte of a header every interval; one the front end closes is opened
// again. Their starts are spread over the first interval.
func slowloris(addr string, n int, every time.Duration) dosProbe {
	return func(ctx context.Context) func() string {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var opened, closedByServer, answeredN, openAtEnd, dialErrs int
		var lifetimes []time.Duration
		var answers []string
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-ctx.Done():
					return
				case <-time.After(every * time.Duration(i) / time.Duration(n)):
				}
				for ctx.Err() == nil {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						mu.Lock()
						dialErrs++
						mu.Unlock()
						time.Sleep(time.Second)
						continue
					}
					start := time.Now()
					mu.Lock()
					opened++
					mu.Unlock()
					closed := make(chan []byte, 1)
					go func() {
						got, _ := io.ReadAll(c)
						closed <- got
					}()
					_, err = io.WriteString(c, "GET /hello/alice HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
					tick := time.NewTicker(every)
				loop:
					for err == nil {
						select {
						case <-ctx.Done():
							break loop
						case got := <-closed:
							closed <- got
							break loop
						case <-tick.C:
							_, err = c.Write([]byte("a"))
						}
					}
					tick.Stop()
					if ctx.Err() != nil {
						c.Close()
						<-closed
						mu.Lock()
						openAtEnd++
						mu.Unlock()
						return
					}
					got := <-closed
					c.Close()
					mu.Lock()
					closedByServer++
					lifetimes = append(lifetimes, time.Since(start))
					if len(got) > 0 {
						answeredN++
						if len(answers) < 3 {
							answers = append(answers, statusLineOf(got))
						}
					}
					mu.Unlock()
				}
			}()
		}
		return func() string {
			wg.Wait()
			return fmt.Sprintf("%d connections opened (%d dials failed); closed by the front end: %d, after p50 %s min %s max %s, %d of them answered %q; open at the end of the phase: %d",
				opened, dialErrs, closedByServer, nthOf(lifetimes, 0.5), nthOf(lifetimes, 0), nthOf(lifetimes, 1),
				answeredN, answers, openAtEnd)
		}
	}
}

// probeLoad is the normal traffic: GETs at a steady rate from a fixed set
// of keep-alive clients, every outcome counted in the phase it started in.
type probeLoad struct {
	url    string
	want   []byte
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu  sync.Mutex
	cur *phaseStats
}

func startProbeLoad(url string, want []byte, perSecond, clients int) *probeLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &probeLoad{url: url, want: want, cancel: cancel}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients,
			DisableCompression: true, IdleConnTimeout: time.Hour},
	}
	jobs := make(chan struct{})
	for range clients {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for range jobs {
				l.one(client)
			}
		}()
	}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		defer close(jobs)
		// Requests fall due at the rate from the start on, whenever the
		// ticker gets to run: a late tick sends what is due.
		start, dispatched := time.Now(), 0
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for due := int(time.Since(start).Seconds() * float64(perSecond)); dispatched < due; dispatched++ {
				select {
				case jobs <- struct{}{}:
				default:
					l.mu.Lock()
					if l.cur != nil {
						l.cur.skipped++
					}
					l.mu.Unlock()
				}
			}
		}
	}()
	return l
}

func (l *probeLoad) setPhase(ps *phaseStats) {
	l.mu.Lock()
	l.cur = ps
	l.mu.Unlock()
}

func (l *probeLoad) stop() {
	l.cancel()
	l.done.Wait()
}

func (l *probeLoad) one(c *http.Client) {
	l.mu.Lock()
	ps := l.cur
	l.mu.Unlock()
	start := time.Now()
	resp, err := c.Get(l.url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	ps.sent++
	ps.lat = append(ps.lat, took)
	switch {
	case err != nil:
		ps.errs++
		ps.note(err.Error())
	case resp.StatusCode/100 != 2:
		ps.status[resp.StatusCode]++
		ps.note(fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body)))
	case !bytes.Equal(body, l.want):
		ps.wrongBody++
		ps.note(fmt.Sprintf("body %q", body))
	default:
		ps.ok++
	}
}

// phaseStats is what one phase measured.
type phaseStats struct {
	name string
	took time.Duration
	// Normal load.
	sent, ok, errs, wrongBody, skipped int
	status                             map[int]int
	firstErrs                          []string
	lat                                []time.Duration
	// The supervisor.
	maxRSS     int64   // kB, of the 100 ms samples
	rss        []int64 // kB, every 100 ms
	minReady   int
	readySeen  bool
	replicaMsg []string
	end        procStats
	load       string
	logLines   []string
	probe      string
}

func (ps *phaseStats) note(msg string) {
	if len(ps.firstErrs) < 5 {
		ps.firstErrs = append(ps.firstErrs, msg)
	}
}

func (ps *phaseStats) failed() int { return ps.sent - ps.ok }

func (ps *phaseStats) summary() string {
	return fmt.Sprintf("%d sent, %d succeeded, %d failed; p50 %s p99 %s; supervisor RSS %s (max %s), VmHWM %s, %d threads, %d fds",
		ps.sent, ps.ok, ps.failed(), nthOf(ps.lat, 0.5), nthOf(ps.lat, 0.99),
		kBAsMiB(ps.end.rss), kBAsMiB(ps.maxRSS), kBAsMiB(ps.end.hwm), ps.end.threads, ps.end.fds)
}

func (ps *phaseStats) row() string {
	rate := 0.0
	if ps.sent > 0 {
		rate = 100 * float64(ps.ok) / float64(ps.sent)
	}
	ready := "?"
	if ps.readySeen {
		ready = strconv.Itoa(ps.minReady)
	}
	return fmt.Sprintf("| %s | %d | %.0f | %d | %d | %.2f %% | %s | %s | %s | %s | %s | %d | %d | %s | %s |",
		ps.name, ps.sent, float64(ps.sent)/ps.took.Seconds(), ps.ok, ps.failed(), rate, fmtLatency(nthOf(ps.lat, 0.5)), fmtLatency(nthOf(ps.lat, 0.99)),
		kBAsMiB(ps.end.rss), kBAsMiB(ps.maxRSS), kBAsMiB(ps.end.hwm), ps.end.threads, ps.end.fds, ready, ps.load)
}

func (ps *phaseStats) failures() string {
	var parts []string
	if ps.errs > 0 {
		parts = append(parts, fmt.Sprintf("%d transport errors", ps.errs))
	}
	for _, code := range slices.Sorted(maps.Keys(ps.status)) {
		parts = append(parts, fmt.Sprintf("%d × %d", ps.status[code], code))
	}
	if ps.wrongBody > 0 {
		parts = append(parts, fmt.Sprintf("%d wrong bodies", ps.wrongBody))
	}
	if ps.skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d ticks not sent (every client busy)", ps.skipped))
	}
	if len(ps.replicaMsg) > 0 {
		parts = append(parts, fmt.Sprintf("replicas: %q", ps.replicaMsg))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; first: %q", ps.firstErrs)
}

// procMonitor samples the supervisor's RSS every 100 ms and the replicas'
// readiness every second, into the current phase.
type procMonitor struct {
	cancel context.CancelFunc
	done   sync.WaitGroup
	mu     sync.Mutex
	cur    *phaseStats
}

func startProcMonitor(pid int, be *Backend) *procMonitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &procMonitor{cancel: cancel}
	m.done.Add(2)
	go func() {
		defer m.done.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rss := readProcStats(pid).rss
			m.mu.Lock()
			if m.cur != nil {
				m.cur.maxRSS = max(m.cur.maxRSS, rss)
				m.cur.rss = append(m.cur.rss, rss)
			}
			m.mu.Unlock()
		}
	}()
	go func() {
		defer m.done.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := be.Status(sctx, "bench")
			scancel()
			m.mu.Lock()
			if ps := m.cur; ps != nil {
				if err != nil {
					if ctx.Err() == nil && len(ps.replicaMsg) < 5 {
						ps.replicaMsg = append(ps.replicaMsg, "status: "+err.Error())
					}
				} else {
					if !ps.readySeen || st.Replicas.Ready < ps.minReady {
						ps.minReady, ps.readySeen = st.Replicas.Ready, true
					}
					for _, r := range st.Instances {
						if r.Message != "" && len(ps.replicaMsg) < 5 && !slices.Contains(ps.replicaMsg, r.Name+": "+r.Message) {
							ps.replicaMsg = append(ps.replicaMsg, r.Name+": "+r.Message)
						}
					}
				}
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *procMonitor) setPhase(ps *phaseStats) {
	m.mu.Lock()
	m.cur = ps
	m.mu.Unlock()
}

func (m *procMonitor) stop() {
	m.cancel()
	m.done.Wait()
}

// procStats is what /proc says of a process; sizes in kB.
type procStats struct {
	rss, hwm     int64
	threads, fds int
}

func readProcStats(pid int) procStats {
	var s procStats
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.rss = n
		case "VmHWM":
			s.hwm = n
		case "Threads":
			s.threads = int(n)
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	s.fds = len(fds)
	return s
}

// nofileLimit is a process's "Max open files" line of /proc/PID/limits.
func nofileLimit(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/limits")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			return "soft " + f[3] + ", hard " + f[4]
		}
	}
	return "unknown"
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func sizeOf(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the lines written to path after off (at most 10, each
// cut at 300 bytes) and the new end.
func logSince(path string, off int64) ([]string, int64) {
	f, err := os.Open(path)
	if err != nil {
		return nil, off
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, off, 1<<30))
	var lines []string
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		n++
		if len(lines) < 10 {
			lines = append(lines, line[:min(len(line), 300)])
		}
	}
	if n > len(lines) {
		lines = append(lines, fmt.Sprintf("… and %d more lines", n-len(lines)))
	}
	return lines, off + int64(len(b))
}

func statusLineOf(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\r\n")
	return line
}

// nthOf returns the value below which the fraction q of ds fall; 0 for
// none.
func nthOf[T cmp.Ordered](ds []T, q float64) T {
	if len(ds) == 0 {
		var zero T
		return zero
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q * float64(len(s)))
	return s[min(i, len(s)-1)]
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
}

func kBAsMiB(kB int64) string { return fmt.Sprintf("%.1f MiB", float64(kB)/1024) }

func envPositive(t *testing.T, k string, def int) int {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: give a positive whole number", k, v)
	}
	return n
}

func envDurationOr(t *testing.T, k string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: give a duration such as 20s", k, v)
	}
	return d
}
