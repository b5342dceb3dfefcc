//go:build integration

package crash

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/demo"
)

// localReleaseCases crash serve in the release phase on the local
// runtime: before the command is handed to the supervisor, and after it
// succeeded but before its end is recorded (the supervisor then answers
// the run asked again from its record).
var localReleaseCases = []crashCase{
	{"release.phase", push}, {"release.phased", push}, {"release.phased", release},
}

// TestLocalReleasePhaseCrashPoints runs the release-phase cases on the
// local runtime, every environment with the sample app's migrate as its
// release command: besides the checks of every case, each environment
// ran the command to its end once per version.
func TestLocalReleasePhaseCrashPoints(t *testing.T) {
	t.Parallel()
	slipwayBinary(t)
	started := time.Now()
	w := newWorld(t, false)
	w.release = config.Command{"/app/" + demo.AppName, "migrate"}
	addr := map[string]string{}
	for env, u := range w.urls {
		addr[env] = strings.TrimPrefix(u, "http://")
	}
	w.writeConfig(addr, false)
	s := &scenario{w: w, prodHist: []string{w.baseline(localReleaseCases, started)}}
	runCases(t, localReleaseCases, s.run)
	if t.Failed() {
		return
	}
	for _, env := range envs {
		runs := releaseRuns(t, filepath.Join(w.ws.DataDir, "run", demo.AppName, "envs", env, "supervisor.log"))
		if len(runs) == 0 {
			t.Errorf("%s: no release command ran", env)
		}
		for version, n := range runs {
			if n != 1 {
				t.Errorf("%s: the release command of %s ran to its end %d times; want once", env, version, n)
			}
		}
		t.Logf("%s: release commands run to their end, by version: %v", env, runs)
	}
	t.Logf("release phase: %d crashes in %s", len(localReleaseCases), time.Since(started).Round(time.Second))
}

// releaseRuns counts, by version, the release commands a supervisor's log
// says succeeded.
func releaseRuns(t *testing.T, log string) map[string]int {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runs := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct{ Msg, Version string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "release phase succeeded" {
			runs[line.Version]++
		}
	}
	return runs
}
