package pipeline

import (
	"context"
	"testing"
)

// Status shows the URL the runtime reports for a deployed environment (a
// load balancer's address, say), else the configured one.
func TestStatusURLFromRuntime(t *testing.T) {
	h := newHarness(t)
	c1 := h.repo.commit("c1")
	h.start()
	h.pushMaster(c1)
	urls := func() (dev, prod string) {
		t.Helper()
		st, err := h.c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Environments[0].URL, st.Environments[1].URL
	}
	if dev, prod := urls(); dev != "http://127.0.0.1:8081" || prod != "http://127.0.0.1:8080" {
		t.Errorf("URLs with none from the runtime: dev %q, prod %q; want the configured ones", dev, prod)
	}
	h.deployer.mu.Lock()
	h.deployer.urls = map[string]string{"dev": "http://203.0.113.10", "prod": "http://203.0.113.11"}
	h.deployer.mu.Unlock()
	if dev, prod := urls(); dev != "http://203.0.113.10" || prod != "http://127.0.0.1:8080" {
		t.Errorf("URLs: dev %q, prod %q; want dev's from the runtime, prod's (not deployed) configured", dev, prod)
	}
}
