package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load sends GET requests to a URL at a steady rate from many goroutines
// and counts the answers.
type load struct {
	url    string
	ok     atomic.Int64
	bad    atomic.Int64
	failed atomic.Int64

	mu       sync.Mutex
	failures []string

	cancel context.CancelFunc
	done   sync.WaitGroup
	start  time.Time
}

// startLoad starts sending perSecond requests a second to url until the
// test ends. A test under load does not call t.Parallel: it runs before
// the parallel tests, alone, so that no other test's processes take the
// CPU the load and the replicas it checks need.
func startLoad(t testing.TB, url string, perSecond int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{url: url, cancel: cancel, start: time.Now()}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
	jobs := make(chan struct{})
	worker := func() {
		defer l.done.Done()
		for range jobs {
			l.one(client)
		}
	}
	// Start with a few workers and add one whenever every worker is busy,
	// so that slow answers on a loaded machine do not turn into requests
	// never sent. Only past maxWorkers does the generator count a request
	// it could not send as a failure.
	const startWorkers, maxWorkers = 32, 2048
	workers := startWorkers
	for range startWorkers {
		l.done.Add(1)
		go worker()
	}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		defer close(jobs)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				select {
				case jobs <- struct{}{}:
					continue
				default:
				}
				if workers >= maxWorkers {
					l.note(fmt.Sprintf("load generator fell behind: all %d workers busy", workers))
					continue
				}
				workers++
				l.done.Add(1)
				go worker()
				jobs <- struct{}{}
			}
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *load) one(c *http.Client) {
	resp, err := c.Get(l.url)
	if err != nil {
		l.note(err.Error())
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		l.ok.Add(1)
		return
	}
	l.bad.Add(1)
	l.record(fmt.Sprintf("%s (Slipway-Commit %q)", resp.Status, resp.Header.Get("Slipway-Commit")))
}

func (l *load) note(msg string) {
	l.failed.Add(1)
	l.record(msg)
}

func (l *load) record(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, msg)
	}
}

func (l *load) stop() {
	l.cancel()
	l.done.Wait()
}

// counts is a snapshot of what the load generator saw.
type counts struct{ ok, bad, failed int64 }

func (l *load) counts() counts { return counts{l.ok.Load(), l.bad.Load(), l.failed.Load()} }

func (c counts) minus(d counts) counts {
	return counts{c.ok - d.ok, c.bad - d.bad, c.failed - d.failed}
}

// check reports the counts of one phase and fails the test unless every
// request got a 2xx answer.
func (l *load) check(t testing.TB, phase string, since counts, elapsed time.Duration) {
	t.Helper()
	c := l.counts().minus(since)
	total := c.ok + c.bad + c.failed
	rate := float64(total) / elapsed.Seconds()
	t.Logf("%-34s %6d requests in %6s (%4.0f/s): %d 2xx, %d other status, %d failed",
		phase+":", total, elapsed.Round(time.Millisecond), rate, c.ok, c.bad, c.failed)
	if c.bad+c.failed > 0 {
		l.mu.Lock()
		t.Errorf("%s: %d requests did not get a 2xx answer; first failures: %q", phase, c.bad+c.failed, l.failures)
		l.mu.Unlock()
	}
	if total == 0 {
		t.Errorf("%s: no request was sent", phase)
	}
}
