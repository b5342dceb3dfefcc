//go:build integration

package local

import (
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
	be := newTestBackend(b, shortTempDir(b), &memStore{})
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
// balancing the same birthday-app replicas, with wrk: throughput, and p99
// latency compared with calling one replica directly. It prints the
// figures and asserts nothing; bench/lb-vs-nginx runs it.
func TestBalancerVersusNginx(t *testing.T) {
	if os.Getenv("SLIPWAY_BENCH") != "1" {
		t.Skip("benchmark: runs with SLIPWAY_BENCH=1 (bench/lb-vs-nginx)")
	}
	nginx := testenv.LookPath(t, "nginx")
	wrk := testenv.LookPath(t, "wrk")
	replicas, _ := strconv.Atoi(envOr("BENCH_REPLICAS", "2"))
	duration := envOr("BENCH_DURATION", "3s")
	path := envOr("BENCH_PATH", "/healthz")
	// Throughput with many connections; latency with few, so that the
	// figures are the proxies' own and not queueing.
	thrConns, latConns := envOr("BENCH_CONNS", "64"), envOr("BENCH_LAT_CONNS", "2")

	v1r, _, _ := builtBirthdayApp(t)
	dir := shortTempDir(t)
	be := newTestBackend(t, dir, &memStore{})
	if err := be.Apply(t.Context(), birthdaySpec("bench", v1r, replicas)); err != nil {
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
    listen 127.0.0.1:%[3]d;
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
`, ndir, upstream.String(), nginxPort)
	if err := os.WriteFile(filepath.Join(ndir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", ndir, "-c", filepath.Join(ndir, "nginx.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	nginxURL := fmt.Sprintf("http://127.0.0.1:%d", nginxPort)
	for i := 0; ; i++ {
		resp, err := http.Get(nginxURL + path)
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if i > 200 {
			t.Fatalf("nginx did not answer: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	run := func(url, conns string) wrkResult {
		threads := "-t2"
		if conns == latConns {
			threads = "-t1"
		}
		out, err := exec.Command(wrk, threads, "-c"+conns, "-d"+duration, "--latency", url+path).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk %s: %v\n%s", url, err, out)
		}
		return parseWrk(t, string(out))
	}
	direct := "http://" + st.Instances[0].Address
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("%d birthday-app replicas, GET %s, wrk -d%s (-t2 -c%s for throughput, -t1 -c%s for latency); load average %s",
		replicas, path, duration, thrConns, latConns, strings.Join(strings.Fields(string(load))[:3], " "))
	t.Logf("%-32s %12s %10s %10s", "target", "requests/s", "p50", "p99")
	rounds, _ := strconv.Atoi(envOr("BENCH_ROUNDS", "9"))
	var ratios, addedLB, addedNginx, addedLB50, addedNginx50, cpuLBs, cpuNginxs []float64
	// The CPU time each proxy spends per request does not depend on what
	// else runs on the machine: capacity on a machine of its own is in
	// inverse proportion.
	lbPID := readPID(t, filepath.Join(dir, "envs", "bench", "supervisor.pid"))
	nginxPIDs := append([]int{cmd.Process.Pid}, childrenOf(cmd.Process.Pid)...)
	for round := 1; round <= rounds; round++ {
		cpu0 := cpuTime(t, nginxPIDs...)
		thrNginx := run(nginxURL, thrConns)
		cpuNginx := cpuTime(t, nginxPIDs...) - cpu0
		cpu0 = cpuTime(t, lbPID)
		thrLB := run(st.URL, thrConns)
		cpuLB := cpuTime(t, lbPID) - cpu0
		perNginx := cpuNginx / time.Duration(thrNginx.requests)
		perLB := cpuLB / time.Duration(thrLB.requests)
		latDirect := run(direct, latConns)
		latNginx := run(nginxURL, latConns)
		latLB := run(st.URL, latConns)
		for _, r := range []struct {
			name string
			w    wrkResult
		}{
			{"nginx, " + thrConns + " connections", thrNginx}, {"slipway, " + thrConns + " connections", thrLB},
			{"one replica direct, " + latConns + " conns", latDirect}, {"nginx, " + latConns + " connections", latNginx},
			{"slipway, " + latConns + " connections", latLB},
		} {
			t.Logf("%-32s %12.0f %10s %10s", r.name, r.w.rps, r.w.p50, r.w.p99)
		}
		t.Logf("round %d: slipway/nginx throughput %.2f; CPU per request slipway %s, nginx %s; p99 added over direct: slipway %s, nginx %s",
			round, thrLB.rps/thrNginx.rps, perLB, perNginx, latLB.p99-latDirect.p99, latNginx.p99-latDirect.p99)
		ratios = append(ratios, thrLB.rps/thrNginx.rps)
		cpuLBs = append(cpuLBs, float64(perLB))
		cpuNginxs = append(cpuNginxs, float64(perNginx))
		addedLB = append(addedLB, float64(latLB.p99-latDirect.p99))
		addedNginx = append(addedNginx, float64(latNginx.p99-latDirect.p99))
		addedLB50 = append(addedLB50, float64(latLB.p50-latDirect.p50))
		addedNginx50 = append(addedNginx50, float64(latNginx.p50-latDirect.p50))
	}
	ms := func(v float64) time.Duration { return time.Duration(v).Round(100 * time.Nanosecond) }
	t.Logf("median of %d rounds: slipway/nginx throughput %.2f; CPU per request slipway %s, nginx %s (capacity ratio %.2f); added over direct: p50 slipway %s, nginx %s; p99 slipway %s, nginx %s",
		rounds, median(ratios), ms(median(cpuLBs)), ms(median(cpuNginxs)), median(cpuNginxs)/median(cpuLBs),
		ms(median(addedLB50)), ms(median(addedNginx50)), ms(median(addedLB)), ms(median(addedNginx)))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

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

type wrkResult struct {
	requests int64
	rps      float64
	p50, p99 time.Duration
}

var (
	wrkRPS   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal = regexp.MustCompile(`(\d+) requests in`)
	wrkP50   = regexp.MustCompile(`\s50%\s+([0-9.]+[a-z]+)`)
	wrkP99   = regexp.MustCompile(`\s99%\s+([0-9.]+[a-z]+)`)
	wrkErr   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

func parseWrk(t *testing.T, out string) wrkResult {
	t.Helper()
	if m := wrkErr.FindString(out); m != "" {
		t.Errorf("wrk saw errors: %s", m)
	}
	var r wrkResult
	if m := wrkTotal.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if r.requests == 0 {
		t.Fatalf("no request count in wrk output:\n%s", out)
	}
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Requests/sec in wrk output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, x := range []struct {
		re *regexp.Regexp
		d  *time.Duration
	}{{wrkP50, &r.p50}, {wrkP99, &r.p99}} {
		m := x.re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no latency percentiles in wrk output:\n%s", out)
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("wrk latency %q: %v", m[1], err)
		}
		*x.d = d
	}
	return r
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
