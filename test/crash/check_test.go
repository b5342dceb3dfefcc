//go:build integration

package crash

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"slipway.dev/slipway/internal/demo"
	"slipway.dev/slipway/internal/ledger"
	"slipway.dev/slipway/internal/pipeline"
	"slipway.dev/slipway/internal/registry"
)

// This file checks what a crash may not leave behind: the ledger, what
// runs, the registry's tags and git's tags and branches disagreeing; a
// deployment done twice; an orphan process, a temporary directory or a
// lock.

// problems collects what is wrong.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// checkTruth checks that status, the runtime, the registry and git agree
// on what each environment runs.
func (w *world) checkTruth(p *problems) {
	ctx := context.Background()
	st, ok := w.status()
	if !ok {
		p.add("status: the API does not answer")
		return
	}
	repo := w.reg + "/" + demo.AppName
	reg := registry.NewClient()
	digestOf := func(tag string) string {
		d, err := reg.Digest(ctx, repo, tag)
		if err != nil {
			p.add("registry tag %s: %v", tag, err)
			return ""
		}
		return d.String()
	}
	for _, name := range envs {
		e := envOf(st, name)
		if e.Commit == nil || e.Digest == nil {
			p.add("status: %s runs nothing", name)
			continue
		}
		commit, digest := *e.Commit, *e.Digest
		if !e.Healthy || e.Rollout != nil || e.Replicas.Ready != e.Replicas.Desired {
			p.add("status: %s healthy=%v rollout=%v replicas %d/%d", name, e.Healthy, e.Rollout, e.Replicas.Ready, e.Replicas.Desired)
		}
		ready := 0
		for _, in := range e.Instances {
			if in.Ready && in.Commit == commit {
				ready++
			}
		}
		if ready != e.Replicas.Desired || len(e.Instances) != e.Replicas.Desired {
			p.add("runtime: %s has %d instances, %d ready on %s, want %d: %+v", name, len(e.Instances), ready, commit[:7], e.Replicas.Desired, e.Instances)
		}
		if got := version(w.urls[name]); got != commit {
			p.add("%s's /version = %q, want %s", name, got, commit)
		}
		if got := digestOf("sha-" + commit); got != digest {
			p.add("registry: sha-%s on %s, %s runs %s", commit[:7], got, name, digest)
		}
		if got := digestOf(pipeline.EnvTag(name)); got != digest {
			p.add("registry: %s on %s, %s runs %s", pipeline.EnvTag(name), got, name, digest)
		}
		if name != "prod" {
			continue
		}
		if got := digestOf(pipeline.LiveTag); got != digest {
			p.add("registry: live on %s, prod runs %s", got, digest)
		}
		if e.Release == nil {
			p.add("status: prod runs no release")
		} else {
			rc := *e.Release
			if got := digestOf(rc); got != digest {
				p.add("registry: %s on %s, prod runs %s", rc, got, digest)
			}
			if got := gitOut(w.ws.Bare, "rev-parse", rc+"^{commit}"); got != commit {
				p.add("git: tag %s on %s, want %s", rc, got, commit)
			}
			if got := gitOut(w.ws.Bare, "cat-file", "-t", rc); got != "tag" {
				p.add("git: %s is a %q, want an annotated tag", rc, got)
			}
		}
		if got := gitOut(w.ws.Bare, "rev-parse", "release"); got != commit {
			p.add("git: release at %s, prod runs %s", got, commit)
		}
	}
	// Every release name is a tag in both the registry and git, or in
	// neither.
	tags, err := reg.Tags(ctx, repo)
	if err != nil {
		p.add("registry tags: %v", err)
		return
	}
	var regRC []string
	for _, t := range tags {
		if strings.HasPrefix(t, "RC") {
			regRC = append(regRC, t)
		}
	}
	gitRC := strings.Fields(gitOut(w.ws.Bare, "tag", "--list", "RC*"))
	slices.Sort(regRC)
	slices.Sort(gitRC)
	if !slices.Equal(regRC, gitRC) {
		p.add("release tags differ: registry %v, git %v", regRC, gitRC)
	}
}

func gitOut(dir string, args ...string) string {
	out, _ := gitErr(dir, args...)
	return out
}

// checkLedger checks that no deployment is left in flight, that no
// environment took a commit twice, and that no commit was built twice.
func (w *world) checkLedger(p *problems) {
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(w.ws.DataDir, ledger.FileName))
	if err != nil {
		p.add("open the ledger: %v", err)
		return
	}
	defer store.Close()
	rows, err := store.DB().QueryContext(ctx, `SELECT id, env, kind, commit_sha, state, step, note FROM deployments ORDER BY id`)
	if err != nil {
		p.add("read deployments: %v", err)
		return
	}
	defer rows.Close()
	took := map[string]int64{} // env commit → the succeeded automatic deployment
	for rows.Next() {
		var id int64
		var env, kind, commit, state, step, note string
		if err := rows.Scan(&id, &env, &kind, &commit, &state, &step, &note); err != nil {
			p.add("read deployments: %v", err)
			return
		}
		if state == string(ledger.StatePending) || state == string(ledger.StateRolling) {
			p.add("deployment %d (%s %s of %s) still %s at %s", id, env, kind, commit[:7], state, step)
		}
		if kind == string(ledger.KindDeploy) && state == string(ledger.StateSucceeded) {
			k := env + " " + commit
			if other, dup := took[k]; dup {
				p.add("%s took %s twice: deployments %d and %d", env, commit[:7], other, id)
			}
			took[k] = id
		}
	}
	if err := rows.Err(); err != nil {
		p.add("read deployments: %v", err)
	}
	b, err := store.DB().QueryContext(ctx, `SELECT commit_sha, count(*) FROM builds WHERE state = 'pushed' AND reason = '' GROUP BY commit_sha HAVING count(*) > 1`)
	if err != nil {
		p.add("read builds: %v", err)
		return
	}
	defer b.Close()
	for b.Next() {
		var commit string
		var n int
		b.Scan(&commit, &n)
		p.add("%s built and pushed %d times", commit[:7], n)
	}
}

// checkLeftovers looks for processes, temporary directories and locks no
// one owns: every process that works below the scenario's directory must
// be serve, a supervisor whose pid file names it, or a descendant of
// either; the build work directory holds only the app's stable checkout;
// no image is half unpacked; no registry upload is left open.
func (w *world) checkLeftovers(p *problems) {
	w.checkProcesses(p)
	work, _ := os.ReadDir(filepath.Join(w.ws.DataDir, "work"))
	for _, e := range work {
		if n := e.Name(); n != demo.AppName+".src" && n != demo.AppName+".src.lock" && n != "procs" {
			p.add("left in the build work directory: %s", n)
		}
	}
	// The build's checkout lock is free once no build runs.
	if f, err := os.OpenFile(filepath.Join(w.ws.DataDir, "work", demo.AppName+".src.lock"), os.O_RDWR, 0); err == nil {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			p.add("the build checkout's lock is held with no build running: %v", err)
		} else {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
		f.Close()
	}
	records, _ := os.ReadDir(filepath.Join(w.ws.DataDir, "work", "procs"))
	for _, r := range records {
		p.add("a process group still recorded as running: %s", r.Name())
	}
	half, _ := filepath.Glob(filepath.Join(w.ws.DataDir, "run", demo.AppName, "images", ".unpack-*"))
	for _, h := range half {
		p.add("a half-unpacked image: %s", h)
	}
	uploads, _ := filepath.Glob(filepath.Join(w.ws.DataDir, registry.StorageDir, "docker", "registry", "v2", "repositories", "*", "_uploads", "*"))
	for _, u := range uploads {
		p.add("a registry upload left open: %s", u)
	}
}

// checkProcesses reports the processes working below the scenario's
// directory that are neither serve, a supervisor its pid file names, nor
// a descendant of either.
func (w *world) checkProcesses(p *problems) {
	owners := map[int]string{os.Getpid(): "the test"}
	if w.serve != nil {
		owners[w.serve.Process.Pid] = "serve"
	}
	envDirs, _ := filepath.Glob(filepath.Join(w.ws.DataDir, "run", demo.AppName, "envs", "*"))
	for _, d := range envDirs {
		b, err := os.ReadFile(filepath.Join(d, "supervisor.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			owners[pid] = "supervisor of " + filepath.Base(d)
		}
	}
	procs := processes()
	for pid, pr := range procs {
		if !pr.below(w.root) {
			continue
		}
		owned := false
		for a := pid; a > 1; a = procs[a].ppid {
			if _, ok := owners[a]; ok {
				owned = true
				break
			}
			if _, ok := procs[a]; !ok {
				break
			}
		}
		if !owned {
			p.add("orphan process %d (parent %d): %s (in %s)", pid, pr.ppid, pr.cmdline, pr.cwd)
		}
	}
}

type proc struct {
	ppid         int
	cmdline, cwd string
}

func (pr proc) below(dir string) bool {
	return strings.Contains(pr.cmdline, dir) || strings.HasPrefix(pr.cwd, dir)
}

// processes reads every process of the machine from /proc.
func processes() map[int]proc {
	out := map[int]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		out[pid] = proc{ppid: ppid, cmdline: strings.ReplaceAll(string(cmd), "\x00", " "), cwd: cwd}
	}
	return out
}
