package build

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/ledger"
)

// Build arguments every Dockerfile build gets (a Dockerfile reads them
// with ARG): the commit, its short form, and the commit's time in seconds
// since 1970 for tools that make reproducible files (SOURCE_DATE_EPOCH).
const (
	ArgCommit          = "SLIPWAY_COMMIT"
	ArgVersion         = "SLIPWAY_VERSION"
	ArgSourceDateEpoch = "SOURCE_DATE_EPOCH"
)

// cacheTag names, in buildah's storage, the image the last Dockerfile
// build made: the layers it shares with the next build stay cached, the
// rest is removed after each build.
const cacheTag = "localhost/slipway-cache/last:latest"

// buildah returns the Buildah of this builder's app: storage in
// DataDir/buildah, the image registry's host insecure when it is.
func (b *Builder) buildah() *Buildah {
	h := &Buildah{Bin: b.Buildah, Dir: filepath.Join(b.DataDir, BuildahDir)}
	if host, _, _ := strings.Cut(b.Repository, "/"); b.InsecureRegistry || loopback(host) {
		h.Insecure = append(h.Insecure, host)
	}
	return h
}

// loopback reports whether a registry host (host or host:port) is this
// machine, which slipway's registry client speaks plain HTTP to, as
// go-containerregistry does.
func loopback(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// dockerfile is a Dockerfile build of commit, checked out in checkout:
// buildah builds it (its RUN steps are tests: one that fails fails the
// build), the test command runs in the image when there is one, and the
// image is pushed with the same tags as a Go build's. It returns the
// pushed manifest's digest.
func (b *Builder) dockerfile(ctx context.Context, row *ledger.Build, commit, checkout, work string, steps *steps, logFile *os.File, logPath string) (v1.Hash, error) {
	if _, err := LookBuildah(b.Buildah); err != nil {
		return v1.Hash{}, err
	}
	h := b.buildah()
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return v1.Hash{}, fmt.Errorf("make buildah directory: %w", err)
	}
	unlock, err := h.lock(ctx)
	if err != nil {
		return v1.Hash{}, err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	if err := b.setState(ctx, row, ledger.BuildBuilding); err != nil {
		return v1.Hash{}, err
	}
	b.progress("%s: checking out", commit[:7])
	if err := b.Source.Checkout(ctx, commit, checkout); err != nil {
		return v1.Hash{}, err
	}
	schemaLabels, err := b.readSchema(commit, checkout, row)
	if err != nil {
		return v1.Hash{}, err
	}
	start := time.Now()
	id, err := b.buildDockerfile(ctx, h, commit, checkout, work, steps, logFile, logPath)
	row.BuildDuration = time.Since(start)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := b.testInImage(ctx, h, row, id, checkout, steps, logFile, logPath); err != nil {
		return v1.Hash{}, err
	}
	digest, err := b.pushDockerfileImage(ctx, h, row, id, commit, work, schemaLabels, steps, logFile)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := b.recordPushed(ctx, row); err != nil {
		return v1.Hash{}, err
	}
	locked = false
	b.keep(h, id, unlock)
	return digest, nil
}

// buildDockerfile runs buildah build and returns the image's ID.
func (b *Builder) buildDockerfile(ctx context.Context, h *Buildah, commit, checkout, work string, steps *steps, logFile *os.File, logPath string) (string, error) {
	when, err := b.Source.CommitTime(ctx, commit)
	if err != nil {
		return "", err
	}
	spec, err := b.dockerfileSpec(commit, when, checkout, work)
	if err != nil {
		return "", err
	}
	st := steps.start(StepBuilding, "buildah build "+b.Build.DockerfilePath())
	id, err := h.Build(ctx, logFile, b.Build.Timeout, spec)
	if err != nil {
		st.fail()
		return "", b.dockerfileError(err, logPath)
	}
	st.end("built", "", " (image "+shortID(id)+")", "imageID", id)
	return id, nil
}

// dockerfileSpec is what buildah builds for commit: the configured
// Dockerfile, context, target and arguments, the commit's time as the
// image's, and the labels a Go build's image has.
func (b *Builder) dockerfileSpec(commit string, when time.Time, checkout, work string) (BuildSpec, error) {
	ctxDir := filepath.Join(checkout, filepath.FromSlash(b.Build.Context))
	dockerfile := filepath.Join(checkout, filepath.FromSlash(b.Build.DockerfilePath()))
	if fi, err := os.Stat(dockerfile); err != nil || fi.IsDir() {
		return BuildSpec{}, fmt.Errorf("%w: %s is not in commit %s: add it, or name the Dockerfile with build.dockerfile and build.context",
			ErrDockerfile, b.Build.DockerfilePath(), commit[:7])
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return BuildSpec{}, fmt.Errorf("%w: build.context %s is not a directory in commit %s", ErrDockerfile, b.Build.Context, commit[:7])
	}
	text, err := os.ReadFile(dockerfile)
	if err != nil {
		return BuildSpec{}, fmt.Errorf("read %s: %w", b.Build.DockerfilePath(), err)
	}
	declared := declaredArgs(string(text))
	args := map[string]string{}
	for k, v := range map[string]string{
		ArgCommit:          commit,
		ArgVersion:         commit[:7],
		ArgSourceDateEpoch: strconv.FormatInt(when.Unix(), 10),
	} {
		if declared[k] {
			args[k] = v // only those it reads: buildah warns of the others
		}
	}
	for k, v := range b.Build.Args {
		args[k] = v
	}
	return BuildSpec{
		Context:    ctxDir,
		Dockerfile: dockerfile,
		Target:     b.Build.Target,
		Args:       args,
		Timestamp:  when,
		IIDFile:    filepath.Join(work, "iid"),
	}, nil
}

// argLine matches a Dockerfile's ARG instruction and its first name.
var argLine = regexp.MustCompile(`(?im)^[ \t]*ARG[ \t]+([A-Za-z_][A-Za-z0-9_]*)`)

// declaredArgs are the build arguments a Dockerfile declares with ARG.
func declaredArgs(dockerfile string) map[string]bool {
	out := map[string]bool{}
	for _, m := range argLine.FindAllStringSubmatch(dockerfile, -1) {
		out[m[1]] = true
	}
	return out
}

// imageLabels are the OCI labels of every image slipway builds.
func imageLabels(app, commit, source string, when time.Time) map[string]string {
	short := commit
	if len(short) > 7 {
		short = short[:7]
	}
	return map[string]string{
		LabelRevision: commit,
		LabelSource:   source,
		LabelCreated:  when.UTC().Format(time.RFC3339),
		LabelTitle:    app,
		LabelVersion:  short,
	}
}

// dockerfileError explains a failed buildah build: buildah missing, a base
// image that could not be pulled, or the Dockerfile's own failure (a RUN
// step, say), with the end of the output.
func (b *Builder) dockerfileError(err error, logPath string) error {
	if errors.Is(err, ErrBuildahMissing) || errors.Is(err, ErrDockerfile) {
		return err
	}
	kind := ErrDockerfile
	if cause := baseImageCause(lastLines(logPath, tailLines)); cause != "" {
		return fmt.Errorf("%w: %s; output in %s", ErrBaseImage, cause, logPath)
	}
	return b.stepError(kind, "buildah build", b.Build.Timeout, "build.timeout", logPath, err)
}

// baseImageCause finds buildah's reason for not pulling a FROM image in
// its output: "" when the build failed for another reason.
func baseImageCause(tail string) string {
	for _, l := range strings.Split(tail, "\n") {
		if i := strings.Index(l, "creating build container: "); i >= 0 {
			return strings.TrimSuffix(l[i+len("creating build container: "):], `"`)
		}
	}
	return ""
}

// testInImage runs the test command, when the configuration has one, in a
// container of the built image.
func (b *Builder) testInImage(ctx context.Context, h *Buildah, row *ledger.Build, id, checkout string, steps *steps, logFile *os.File, logPath string) error {
	if strings.TrimSpace(b.Test.Command) == "" {
		return nil
	}
	if err := b.setState(ctx, row, ledger.BuildTesting); err != nil {
		return err
	}
	st := steps.start(StepTesting, b.Test.Command+" (in the image)")
	name := fmt.Sprintf("slipway-test-%d-%s", row.ID, row.Commit[:7])
	if err := h.Test(ctx, logFile, checkout, b.Test.Timeout, id, name, b.Test.Command); err != nil {
		row.TestDuration = st.fail()
		return b.stepError(ErrTestsFailed, "tests", b.Test.Timeout, "test.timeout", logPath, err)
	}
	row.TestDuration = st.end("tests passed", "", "")
	return nil
}

// pushDockerfileImage pushes the image and records the digest of the
// manifest the registry got. buildah pushes the layers and a manifest
// under a tag of this build's own; the labels of a Go build's image are
// then added to its configuration (a new configuration blob and manifest,
// the layers unchanged) and that image is pushed by digest and tagged with
// the short commit, latest and sha-COMMIT (last: its presence means
// "built"), as a Go build's is. The build's tag is removed. Labels set
// this way leave buildah's cache alone: with --label, each would be a
// build step of its own, made again for every commit.
func (b *Builder) pushDockerfileImage(ctx context.Context, h *Buildah, row *ledger.Build, id, commit, work string, extra map[string]string, steps *steps, logFile *os.File) (v1.Hash, error) {
	short, shaTag := commit[:7], "sha-"+commit
	if row.State != ledger.BuildBuilding {
		if err := b.setState(ctx, row, ledger.BuildBuilding); err != nil {
			return v1.Hash{}, err
		}
	}
	st := steps.start(StepPushing, b.Repository)
	buildTag := fmt.Sprintf("slipway-build-%d", row.ID)
	pushed, err := h.Push(ctx, logFile, work, b.Build.Timeout, id, b.Repository+":"+buildTag)
	if err != nil {
		st.fail()
		return v1.Hash{}, fmt.Errorf("%w: buildah push to %s: %w", ErrPush, b.Repository, err)
	}
	when, err := b.Source.CommitTime(ctx, commit)
	if err != nil {
		st.fail()
		return v1.Hash{}, err
	}
	img, err := b.labelled(ctx, pushed, withLabels(imageLabels(b.App, commit, b.Source.URL(), when), extra))
	if err != nil {
		st.fail()
		return v1.Hash{}, err
	}
	if err := checkRunnable(img, "the image the Dockerfile builds"); err != nil {
		st.fail()
		b.Registry.Untag(ctx, b.Repository, buildTag) // best effort: it names no commit
		return v1.Hash{}, err
	}
	digest, err := b.Registry.Push(ctx, b.Repository, img, short, "latest", shaTag)
	if err != nil {
		st.fail()
		return v1.Hash{}, fmt.Errorf("%w: %w", ErrPush, err)
	}
	if err := b.Registry.Untag(ctx, b.Repository, buildTag); err != nil {
		fmt.Fprintf(logFile, "# the registry kept the tag %s: %v\n", buildTag, err)
	}
	row.Digest = digest.String()
	st.end("pushed", row.Reference(), fmt.Sprintf(" (tags %s, latest, %s)", short, shaTag), "image", row.Reference())
	return digest, nil
}

// labelled returns the image pushed as digest with labels added to its
// configuration.
func (b *Builder) labelled(ctx context.Context, digest v1.Hash, labels map[string]string) (v1.Image, error) {
	img, err := b.Registry.Image(ctx, b.Repository, digest)
	if err != nil {
		return nil, fmt.Errorf("%w: read back the pushed image: %w", ErrPush, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%w: read back the pushed image's configuration: %w", ErrPush, err)
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range labels {
		cf.Config.Labels[k] = v
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("label the image: %w", err)
	}
	return img, nil
}

// keep marks the image as the next build's cache and removes what no
// build can use any more, in the background: the build is done. The
// storage stays locked until then (unlock), so that the next build waits
// for it. The output goes to DataDir/buildah/prune.log.
func (b *Builder) keep(h *Buildah, id string, unlock func()) {
	b.background.Add(1)
	go func() {
		defer b.background.Done()
		defer unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		log, err := os.Create(filepath.Join(h.Dir, "prune.log"))
		if err != nil {
			b.logger().Error("keep the build's cache", "err", err)
			return
		}
		defer log.Close()
		if err := h.Keep(ctx, log, id, cacheTag); err != nil {
			b.logger().Error("keep the build's cache", "err", err, "log", log.Name())
		}
	}()
}

// recordPushed finishes the ledger row of a build whose image is pushed.
func (b *Builder) recordPushed(ctx context.Context, row *ledger.Build) error {
	row.State = ledger.BuildPushed
	row.Reason = ""
	if err := b.Ledger.UpdateBuild(ctx, row); err != nil {
		return err
	}
	b.addEvent(ctx, *row, ledger.OutcomeSucceeded, "pushed "+row.Reference())
	return nil
}

// Wait waits for the work a build leaves running in the background (the
// removal of a Dockerfile build's unused layers).
func (b *Builder) Wait() { b.background.Wait() }

// shortID is an image ID's first 12 hex digits.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// isDockerfile reports whether the builder builds from a Dockerfile.
func (b *Builder) isDockerfile() bool { return b.Build.Kind == config.BuildDockerfile }
