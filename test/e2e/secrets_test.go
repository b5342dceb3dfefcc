//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slipway.dev/slipway/internal/api"
	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/testenv"
)

// secretApp makes the sample service answer its two secrets on an address
// of its own (E2E_SECRET_ADDR), which one replica binds.
const secretApp = `package main

import (
	"net"
	"net/http"
	"os"
	"time"
)

func init() {
	addr := os.Getenv("E2E_SECRET_ADDR")
	if addr == "" {
		return
	}
	go func() {
		for {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(os.Getenv("E2E_API_KEY") + " " + os.Getenv("E2E_DB_PASS")))
			}))
		}
	}()
}
`

// TestSecretsEndToEnd gives dev two secrets, one from serve's environment
// and one from a file, deploys a commit whose app answers them, and looks
// for their values everywhere slipway writes or answers: every file of
// its data directory (the ledger among them), serve's log, and the CLI's
// and API's answers. Only the app's answer may hold them.
func TestSecretsEndToEnd(t *testing.T) {
	const fromEnv, fromFile = "e2e-s3cr3t-env-4d7a91", "e2e-s3cr3t-file-c06b2e"
	secretAddr := testenv.FreeAddr(t)
	t.Setenv("SLIPWAY_E2E_SECRET", fromEnv)
	e, token := startDemo(t, true, func(e *env, short string) {
		ws := e.ws
		secretFile := filepath.Join(short, "db_pass")
		writeFile(t, secretFile, fromFile+"\n")
		cfg, err := os.ReadFile(ws.Config)
		if err != nil {
			t.Fatal(err)
		}
		devCfg := "- name: dev\n    env:\n      E2E_SECRET_ADDR: " + secretAddr + "\n    secrets:\n" +
			"      E2E_API_KEY: {env: SLIPWAY_E2E_SECRET}\n      E2E_DB_PASS: {file: " + secretFile + "}\n"
		if !bytes.Contains(cfg, []byte("- name: dev\n")) {
			t.Fatalf("the demo's configuration has no dev:\n%s", cfg)
		}
		writeFile(t, ws.Config, string(bytes.Replace(cfg, []byte("- name: dev\n"), []byte(devCfg), 1)))
	})
	ws := e.ws

	c1 := e.push("Answer the secrets", func(dir string) {
		writeFile(t, filepath.Join(dir, "zz_secrets.go"), secretApp)
	})
	e.waitFor("c1 on dev", func() bool {
		d := envOf(e.status(), "dev")
		return d.Commit != nil && *d.Commit == c1 && d.Healthy && d.Rollout == nil
	})
	var answer string
	e.waitFor("the app's answer", func() bool {
		resp, err := http.Get("http://" + secretAddr + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer = string(b)
		return true
	})
	if want := fromEnv + " " + fromFile; answer != want {
		t.Fatalf("the app answered %q, want %q", answer, want)
	}

	places := map[string][]byte{}
	for _, args := range [][]string{{"status", "-o", "json"}, {"status"}, {"history", "-o", "json"}, {"history", "dev"},
		{"logs", "dev"}, {"diff"}} {
		out, errOut, _ := e.slipway(args...)
		places["slipway "+strings.Join(args, " ")] = []byte(out + errOut)
	}
	c := api.NewClient(e.apiURL, token)
	h, err := c.History(context.Background(), demo.AppName, "dev", 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range h.Deployments {
		detail, err := c.DeploymentDetail(context.Background(), demo.AppName, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(detail)
		places["deployment detail"] = append(places["deployment detail"], raw...)
	}
	e.stop() // the ledger's last writes reach its file
	log, err := os.ReadFile(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	places["serve's log"] = log
	filepath.WalkDir(ws.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.Contains(p, "/rootfs/") {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil {
			places[p] = b
		}
		return nil
	})
	if len(places) < 10 {
		t.Fatalf("looked in %d places only", len(places))
	}
	for where, data := range places {
		for _, secret := range []string{fromEnv, fromFile} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("a secret's value is in %s", where)
			}
		}
	}
}
