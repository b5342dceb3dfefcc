package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Errors of Dockerfile builds.
var (
	// ErrBuildahMissing: the buildah command is not installed.
	ErrBuildahMissing = errors.New("buildah is not installed: install it (Debian, Ubuntu: apt-get install buildah; Fedora: dnf install buildah); Dockerfile builds (build.kind: dockerfile) need it")
	// ErrDockerfile: buildah failed to build the Dockerfile (a RUN step
	// failed, an instruction is wrong, a file to copy is missing).
	ErrDockerfile = errors.New("Dockerfile build failed")
	// ErrBaseImage: an image the Dockerfile builds FROM could not be pulled.
	ErrBaseImage = errors.New("base image could not be pulled")
)

// BuildahDir is where a Dockerfile build keeps buildah's storage, in the
// app's data directory.
const BuildahDir = "buildah"

// Buildah runs the buildah command on storage of its own: the vfs driver
// (no overlay, no fuse) in Dir/storage with its run root in Dir/run, and
// its own registries.conf; no daemon and nothing of the machine's
// container storage is touched. Storage persists between builds, so that
// unchanged steps of a Dockerfile come from the cache.
type Buildah struct {
	// Bin is the buildah command; "buildah" when empty.
	Bin string
	// Dir holds the storage and configuration.
	Dir string
	// Insecure are the registry hosts (host or host:port) spoken to over
	// plain HTTP or without verifying TLS: the embedded registry, and one
	// configured with registry.insecure.
	Insecure []string
}

// LookBuildah reports whether buildah can be run, with ErrBuildahMissing
// when it is not installed.
func LookBuildah(bin string) (string, error) {
	if bin == "" {
		bin = "buildah"
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", ErrBuildahMissing
	}
	return p, nil
}

func (h *Buildah) bin() string {
	if h.Bin == "" {
		return "buildah"
	}
	return h.Bin
}

// prepare writes the storage and registry configuration buildah reads.
func (h *Buildah) prepare() error {
	for _, d := range []string{"storage", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o700); err != nil {
			return fmt.Errorf("prepare buildah storage: %w", err)
		}
	}
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(h.Dir, "storage"), filepath.Join(h.Dir, "run"))
	if err := writeIfChanged(filepath.Join(h.Dir, "storage.conf"), storage); err != nil {
		return fmt.Errorf("prepare buildah storage: %w", err)
	}
	if err := writeIfChanged(filepath.Join(h.Dir, "registries.conf"), registriesConf(h.Insecure)); err != nil {
		return fmt.Errorf("prepare buildah registries: %w", err)
	}
	if _, err := os.Stat("/etc/containers/policy.json"); err != nil {
		if err := writeIfChanged(h.policyFile(), `{"default":[{"type":"insecureAcceptAnything"}]}`+"\n"); err != nil {
			return fmt.Errorf("prepare buildah image policy: %w", err)
		}
	}
	return nil
}

// registriesConf is the registries.conf of slipway's builds: short names
// (FROM python:3.12) come from docker.io, and the insecure hosts are
// spoken to without TLS verification (plain HTTP where they serve it).
func registriesConf(insecure []string) string {
	var b strings.Builder
	b.WriteString("# Written by slipway for its Dockerfile builds.\nunqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n")
	hosts := append([]string(nil), insecure...)
	sort.Strings(hosts)
	for i, host := range hosts {
		if i > 0 && hosts[i-1] == host {
			continue
		}
		fmt.Fprintf(&b, "\n[[registry]]\nlocation = %q\ninsecure = true\n", host)
	}
	return b.String()
}

func writeIfChanged(path, content string) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == content {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// policyFile is the image signature policy slipway writes when the
// machine has none (/etc/containers/policy.json): accept any image, as
// the Go builds' registry client does.
func (h *Buildah) policyFile() string { return filepath.Join(h.Dir, "policy.json") }

// policyArgs names slipway's policy when the machine has none.
func (h *Buildah) policyArgs() []string {
	if _, err := os.Stat("/etc/containers/policy.json"); err == nil {
		return nil
	}
	return []string{"--signature-policy", h.policyFile()}
}

// global are the arguments before every buildah subcommand.
func (h *Buildah) global() []string {
	return []string{"--root", filepath.Join(h.Dir, "storage"), "--runroot", filepath.Join(h.Dir, "run"),
		"--storage-driver", "vfs", "--registries-conf", filepath.Join(h.Dir, "registries.conf")}
}

// env is buildah's environment: slipway's, with the storage configuration
// and temporary files (pulls, pushes) in Dir.
func (h *Buildah) env() []string {
	return append(os.Environ(), "CONTAINERS_STORAGE_CONF="+filepath.Join(h.Dir, "storage.conf"),
		"TMPDIR="+filepath.Join(h.Dir, "tmp"), "BUILDAH_ISOLATION=chroot")
}

// lock takes the storage's lock: builds and the pruning between them take
// turns, so that a prune never removes what a build is making. It returns
// the unlock.
func (h *Buildah) lock(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(filepath.Join(h.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock buildah storage: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock buildah storage: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BuildSpec is what to build from a Dockerfile.
type BuildSpec struct {
	Context    string            // the build context, a directory
	Dockerfile string            // the Dockerfile's path
	Target     string            // the stage to build; "" for the last
	Args       map[string]string // build arguments, after slipway's own
	Labels     map[string]string // labels on the image
	Timestamp  time.Time         // the image's creation time and its files' times
	IIDFile    string            // where buildah writes the image's ID
}

// BuildArgs are buildah's arguments for s, subcommand first.
func (h *Buildah) BuildArgs(s BuildSpec) []string {
	args := append(h.global(), "build", "--isolation", "chroot", "--layers", "--format", "oci",
		"--identity-label=false", "--timestamp", strconv.FormatInt(s.Timestamp.Unix(), 10),
		"--iidfile", s.IIDFile, "--file", s.Dockerfile)
	args = append(args, h.policyArgs()...)
	if s.Target != "" {
		args = append(args, "--target", s.Target)
	}
	for _, k := range sortedKeys(s.Args) {
		args = append(args, "--build-arg", k+"="+s.Args[k])
	}
	for _, k := range sortedKeys(s.Labels) {
		args = append(args, "--label", k+"="+s.Labels[k])
	}
	return append(args, s.Context)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Build builds s into the storage and returns the image's ID. Its output
// goes to log.
func (h *Buildah) Build(ctx context.Context, log *os.File, timeout time.Duration, s BuildSpec) (string, error) {
	if err := h.prepare(); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "$ buildah %s\n", strings.Join(h.BuildArgs(s), " "))
	if err := runLogged(ctx, s.Context, log, timeout, h.env(), h.bin(), h.BuildArgs(s)...); err != nil {
		return "", h.missing(err)
	}
	id, err := os.ReadFile(s.IIDFile)
	if err != nil {
		return "", fmt.Errorf("read the built image's ID: %w", err)
	}
	return strings.TrimSpace(string(id)), nil
}

// missing turns "executable not found" into ErrBuildahMissing.
func (h *Buildah) missing(err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return ErrBuildahMissing
	}
	return err
}

// Test runs command through /bin/sh -c in a container of the image id,
// isolated by chroot, with output to log.
func (h *Buildah) Test(ctx context.Context, log *os.File, dir string, timeout time.Duration, id, name, command string) error {
	if err := h.prepare(); err != nil {
		return err
	}
	from := append(h.global(), "from", "--pull-never", "--quiet", "--name", name)
	from = append(append(from, h.policyArgs()...), id)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, h.bin(), from...)
	cmd.Env, cmd.Stdout, cmd.Stderr = h.env(), &out, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("make a container of image %s to test in: %w", id, h.missing(err))
	}
	defer h.remove(name)
	run := append(h.global(), "run", "--isolation", "chroot", name, "--", "/bin/sh", "-c", command)
	fmt.Fprintf(log, "$ buildah run %s -- /bin/sh -c %q\n", name, command)
	return runLogged(ctx, dir, log, timeout, h.env(), h.bin(), run...)
}

// remove removes the working container name.
func (h *Buildah) remove(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exec.CommandContext(ctx, h.bin(), append(h.global(), "rm", name)...).Run()
}

// Push pushes the image id to ref (REPOSITORY:TAG) and returns the digest
// of the manifest the registry got.
func (h *Buildah) Push(ctx context.Context, log *os.File, dir string, timeout time.Duration, id, ref string) (v1.Hash, error) {
	if err := h.prepare(); err != nil {
		return v1.Hash{}, err
	}
	digestFile := filepath.Join(dir, "digest")
	args := append(h.global(), "push", "--format", "oci", "--digestfile", digestFile, "--retry", "3")
	args = append(append(args, h.policyArgs()...), id, "docker://"+ref)
	fmt.Fprintf(log, "$ buildah push %s docker://%s\n", id, ref)
	if err := runLogged(ctx, dir, log, timeout, h.env(), h.bin(), args...); err != nil {
		return v1.Hash{}, h.missing(err)
	}
	b, err := os.ReadFile(digestFile)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("read the pushed manifest's digest: %w", err)
	}
	d, err := v1.NewHash(strings.TrimSpace(string(b)))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("read the pushed manifest's digest: %w", err)
	}
	return d, nil
}

// Keep tags id as the image the next build's cache starts from, and
// removes the images and layers no build can use any more (those of
// earlier builds, not shared with this one). Its output goes to log.
func (h *Buildah) Keep(ctx context.Context, log *os.File, id, tag string) error {
	if err := runLogged(ctx, h.Dir, log, 10*time.Minute, h.env(), h.bin(), append(h.global(), "tag", id, tag)...); err != nil {
		return fmt.Errorf("tag %s as %s: %w", id, tag, err)
	}
	if err := runLogged(ctx, h.Dir, log, 10*time.Minute, h.env(), h.bin(), append(h.global(), "rmi", "--prune")...); err != nil {
		return fmt.Errorf("remove unused images: %w", err)
	}
	return nil
}
