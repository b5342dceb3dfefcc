//go:build integration

package local

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/deploy"
	"slipway.dev/slipway/internal/deploy/deploytest"
	"slipway.dev/slipway/internal/testenv"
)

func birthdaySpec(env string, rel deploytest.Release, replicas int) deploy.Spec {
	s := birthdayBase(env)
	s.Image, s.Commit, s.Version, s.Replicas = rel.Image, rel.Commit, rel.Version, replicas
	return s
}

// BenchmarkRollingUpdate measures a rolling update of 4 birthday-app
// replicas (maxSurge 1, maxUnavailable 0): from Apply until every new
// replica serves and every old one has stopped.
func BenchmarkRollingUpdate(b *testing.B) {
	v1r, v2r, _ := builtBirthdayApp(b)
	rels := []deploytest.Release{v1r, v2r}
	be := newTestBackend(b, shortTempDir(b))
	ctx := context.Background()
	if err := be.Apply(ctx, birthdaySpec("bench", v1r, 4)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := be.Apply(ctx, birthdaySpec("bench", rels[(i+1)%2], 4)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/rollout")
}

// TestBalancerVersusNginx measures the load balancer against Debian's nginx
// balancing the same birthday-app replicas, with wrk: throughput, and
// latency compared with calling one replica directly, each target's short
// runs taken in turn and pooled. With BENCH_TLS=1 both serve HTTPS with the
// same certificate (wrk speaks HTTP/1.1 over it). It prints the figures and
// asserts nothing; bench/lb-vs-nginx runs it.
func TestBalancerVersusNginx(t *testing.T) {
	if os.Getenv("SLIPWAY_BENCH") != "1" {
		t.Skip("benchmark: runs with SLIPWAY_BENCH=1 (bench/lb-vs-nginx)")
	}
	nginx := testenv.LookPath(t, "nginx")
	wrk := testenv.LookPath(t, "wrk")
	replicas, _ := strconv.Atoi(envOr("BENCH_REPLICAS", "2"))
	duration := envOr("BENCH_DURATION", "1s")
	path := envOr("BENCH_PATH", "/healthz")
	// Throughput with many connections; latency with few, so that the
	// figures are the proxies' own and not queueing.
	thrConns, latConns := envOr("BENCH_CONNS", "64"), envOr("BENCH_LAT_CONNS", "2")

	useTLS := os.Getenv("BENCH_TLS") == "1"

	v1r, _, _ := builtBirthdayApp(t)
	dir := shortTempDir(t)
	be := newTestBackend(t, dir)
	spec := birthdaySpec("bench", v1r, replicas)
	// The same certificate for both: ECDSA P-256, as ACME gives by default.
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	client := http.DefaultClient
	if useTLS {
		ca := newTestCA(t)
		ca.issue(t, certFile, keyFile, 1, "127.0.0.1")
		spec.Frontend.TLS = &deploy.TLS{CertFile: certFile, KeyFile: keyFile}
		client = tlsClient(ca.pool(), "127.0.0.1", false)
	}
	if err := be.Apply(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	st, err := be.Status(t.Context(), "bench")
	if err != nil {
		t.Fatal(err)
	}
	var upstream strings.Builder
	for _, r := range st.Instances {
		fmt.Fprintf(&upstream, "    server %s;\n", r.Address)
	}
	nginxPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ndir := filepath.Join(dir, "nginx")
	os.MkdirAll(filepath.Join(ndir, "tmp"), 0o755)
	listen, scheme := fmt.Sprintf("127.0.0.1:%d", nginxPort), "http"
	if useTLS {
		listen = fmt.Sprintf("127.0.0.1:%d ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m", nginxPort, certFile, keyFile)
		scheme = "https"
	}
	conf := fmt.Sprintf(`worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  upstream app {
    least_conn;
%[2]s    keepalive 128;
  }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`, ndir, upstream.String(), listen)
	if err := os.WriteFile(filepath.Join(ndir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", ndir, "-c", filepath.Join(ndir, "nginx.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	nginxURL := fmt.Sprintf("%s://127.0.0.1:%d", scheme, nginxPort)
	for i := 0; ; i++ {
		resp, err := client.Get(nginxURL + "/healthz")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if i > 200 {
			t.Fatalf("nginx did not answer: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if strings.HasPrefix(path, "/hello/") {
		// A user to greet, so that the GETs read the database.
		req, _ := http.NewRequest(http.MethodPut, nginxURL+path, strings.NewReader(`{"dateOfBirth":"1990-06-15"}`))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT %s: %s", path, resp.Status)
		}
	}
	// Every wrk run writes its latency distribution as 2,000 quantiles, so
	// that the runs of one target can be pooled.
	script := filepath.Join(dir, "quantiles.lua")
	if err := os.WriteFile(script, []byte(quantilesLua), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(url, conns string) wrkResult {
		threads := "-t2"
		if conns == latConns {
			threads = "-t1"
		}
		out, err := exec.Command(wrk, threads, "-c"+conns, "-d"+duration, "-s", script, url+path).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk %s: %v\n%s", url, err, out)
		}
		return parseWrk(t, string(out))
	}
	direct := "http://" + st.Instances[0].Address
	load, _ := os.ReadFile("/proc/loadavg")
	rounds, _ := strconv.Atoi(envOr("BENCH_ROUNDS", "30"))
	if useTLS {
		t.Logf("both over TLS (%s, ECDSA P-256 certificate)", st.URL)
	}
	t.Logf("%d birthday-app replicas, GET %s; %d rounds of wrk -d%s runs, targets in turn (-t2 -c%s for throughput, -t1 -c%s for latency); load average %s",
		replicas, path, rounds, duration, thrConns, latConns, strings.Join(strings.Fields(string(load))[:3], " "))

	// Short runs of each target in turn, the order rotating every round,
	// and the runs of a target pooled: the other load on the machine comes
	// and goes in bursts, and this spreads the bursts evenly over the
	// targets instead of letting one run catch them.
	lbPID := readPID(t, filepath.Join(dir, "envs", "bench", "supervisor.pid"))
	nginxPIDs := append([]int{cmd.Process.Pid}, childrenOf(cmd.Process.Pid)...)
	type target struct {
		name, url, conns string
		pids             []int
		runs             []wrkResult
		cpu              time.Duration
	}
	targets := []*target{
		{name: "nginx, " + thrConns + " connections", url: nginxURL, conns: thrConns, pids: nginxPIDs},
		{name: "slipway, " + thrConns + " connections", url: st.URL, conns: thrConns, pids: []int{lbPID}},
		{name: "one replica direct, " + latConns + " conns", url: direct, conns: latConns},
		{name: "nginx, " + latConns + " connections", url: nginxURL, conns: latConns},
		{name: "slipway, " + latConns + " connections", url: st.URL, conns: latConns},
	}
	thr, lat := targets[:2], targets[2:]
	for round := range rounds {
		for _, group := range [][]*target{thr, lat} {
			for i := range group {
				tg := group[(round+i)%len(group)]
				var cpu0 time.Duration
				if tg.pids != nil {
					cpu0 = cpuTime(t, tg.pids...)
				}
				tg.runs = append(tg.runs, run(tg.url, tg.conns))
				if tg.pids != nil {
					tg.cpu += cpuTime(t, tg.pids...) - cpu0
				}
			}
		}
	}
	t.Logf("%-32s %12s %10s %10s %10s", "target (runs pooled)", "requests/s", "p50", "p99", "p99.9")
	pooled := map[*target]wrkResult{}
	for _, tg := range targets {
		p := pool(tg.runs)
		pooled[tg] = p
		t.Logf("%-32s %12.0f %10s %10s %10s", tg.name, p.rps, p.quantile(0.50), p.quantile(0.99), p.quantile(0.999))
	}
	perReq := func(tg *target) time.Duration { return tg.cpu / time.Duration(pooled[tg].requests) }
	d, n, s := pooled[lat[0]], pooled[lat[1]], pooled[lat[2]]
	t.Logf("throughput slipway/nginx %.2f; CPU per request slipway %s, nginx %s (capacity ratio %.2f)",
		pooled[thr[1]].rps/pooled[thr[0]].rps, perReq(thr[1]), perReq(thr[0]),
		float64(perReq(thr[0]))/float64(perReq(thr[1])))
	for _, q := range []float64{0.50, 0.99, 0.999} {
		t.Logf("added over one replica direct at p%g: slipway %s, nginx %s", q*100,
			s.quantile(q)-d.quantile(q), n.quantile(q)-d.quantile(q))
	}
	// How much the figures move: the same, from each half of the rounds.
	for half := range 2 {
		part := func(tg *target) wrkResult { return pool(tg.runs[half*len(tg.runs)/2 : (half+1)*len(tg.runs)/2]) }
		d, n, s := part(lat[0]), part(lat[1]), part(lat[2])
		t.Logf("half %d of the rounds: throughput slipway/nginx %.2f; p99 added: slipway %s, nginx %s", half+1,
			part(thr[1]).rps/part(thr[0]).rps, s.quantile(0.99)-d.quantile(0.99), n.quantile(0.99)-d.quantile(0.99))
	}
}

// quantilesLua makes wrk print its latency distribution as 2,000 evenly
// spaced quantiles (µs), one "Q" line each, after its usual report.
const quantilesLua = `done = function(summary, latency, requests)
  for k = 0, 1999 do
    io.write(string.format("Q %d\n", latency:percentile((k + 0.5) / 20)))
  end
end
`

// cpuTime is the user+system CPU time the processes used so far.
func cpuTime(t *testing.T, pids ...int) time.Duration {
	t.Helper()
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatalf("CPU time of %d: %v", pid, err)
		}
		// Fields after the command name (which ends with ")"): utime
		// and stime are the 12th and 13th.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

func childrenOf(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var kids []int
	for _, f := range strings.Fields(string(b)) {
		if k, err := strconv.Atoi(f); err == nil {
			kids = append(kids, k)
		}
	}
	return kids
}

// wrkResult is what one or several pooled wrk runs measured.
type wrkResult struct {
	requests int64
	elapsed  time.Duration
	rps      float64
	// samples are latencies, each standing for weight requests.
	samples []weighted
}

type weighted struct {
	latency time.Duration
	weight  float64
}

// quantile returns the latency below which the fraction q of requests fell.
func (r wrkResult) quantile(q float64) time.Duration {
	var total float64
	for _, s := range r.samples {
		total += s.weight
	}
	var sum float64
	for _, s := range r.samples {
		sum += s.weight
		if sum >= q*total {
			return s.latency
		}
	}
	return r.samples[len(r.samples)-1].latency
}

// pool merges runs of the same target.
func pool(runs []wrkResult) wrkResult {
	var p wrkResult
	for _, r := range runs {
		p.requests += r.requests
		p.elapsed += r.elapsed
		p.samples = append(p.samples, r.samples...)
	}
	p.rps = float64(p.requests) / p.elapsed.Seconds()
	slices.SortFunc(p.samples, func(a, b weighted) int { return cmp.Compare(a.latency, b.latency) })
	return p
}

var (
	wrkTotal = regexp.MustCompile(`(\d+) requests in ([0-9.]+[a-z]+)`)
	wrkErr   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
	wrkQ     = regexp.MustCompile(`(?m)^Q (\d+)$`)
)

func parseWrk(t *testing.T, out string) wrkResult {
	t.Helper()
	if m := wrkErr.FindString(out); m != "" {
		t.Errorf("wrk saw errors: %s", m)
	}
	var r wrkResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no request count in wrk output:\n%s", out)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	elapsed, err := time.ParseDuration(m[2])
	if err != nil || r.requests == 0 {
		t.Fatalf("wrk ran %q requests in %q:\n%s", m[1], m[2], out)
	}
	r.elapsed = elapsed
	r.rps = float64(r.requests) / elapsed.Seconds()
	qs := wrkQ.FindAllStringSubmatch(out, -1)
	if len(qs) == 0 {
		t.Fatalf("no latency quantiles in wrk output:\n%s", out)
	}
	for _, q := range qs {
		us, _ := strconv.ParseInt(q[1], 10, 64)
		r.samples = append(r.samples, weighted{time.Duration(us) * time.Microsecond, float64(r.requests) / float64(len(qs))})
	}
	return r
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
