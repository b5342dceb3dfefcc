package local

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"slipway.dev/slipway/internal/registry"
)

// ErrUnsafeImage means an image layer holds an entry the local runtime
// will not write: one that would land outside the directory it is unpacked
// into, or a device node.
var ErrUnsafeImage = errors.New("unsafe image layer")

// ErrUnrunnableImage is an image the local runtime cannot run on this
// machine: one built for another platform, or one with nothing to run (no
// entrypoint, no cmd). It is refused before any layer is unpacked, so the
// environment keeps what it runs.
var ErrUnrunnableImage = errors.New("image cannot run here")

// ErrTooLarge is an image that unpacks to more than the local runtime
// takes (see limits).
var ErrTooLarge = errors.New("image unpacks too large")

// imageFiles is an image unpacked on disk.
type imageFiles struct {
	Digest string `json:"digest"`
	// Rootfs is the directory holding the image's files.
	Rootfs     string   `json:"rootfs"`
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir"`
	User       string   `json:"user"`
}

// unpacker pulls images and unpacks each digest once under dir.
type unpacker struct {
	dir string
	// reg pulls: credentials, retries and insecure registries are its.
	reg *registry.Client
	// retryDelay is the first pause before a pull is tried again
	// (pullRetryDelay when 0).
	retryDelay time.Duration

	locks keyedLocks // per digest
}

// unpack returns the files of image (pinned to a digest), pulling and
// unpacking them the first time the digest is seen.
func (u *unpacker) unpack(ctx context.Context, image string) (imageFiles, error) {
	repo, digest, ok := strings.Cut(image, "@")
	if !ok {
		return imageFiles{}, fmt.Errorf("image %q: not pinned to a digest: use REGISTRY/REPO@sha256:<64 hex>", image)
	}
	hash, err := v1.NewHash(digest)
	if err != nil {
		return imageFiles{}, fmt.Errorf("image %q: %w", image, err)
	}
	dir := filepath.Join(u.dir, strings.ReplaceAll(digest, ":", "-"))
	defer u.locks.lock(digest)()

	if files, err := readImageFiles(dir); err == nil {
		return files, nil
	}
	// The registry client retries each request it makes itself; the
	// config and layers are read afterwards, so a registry that fails
	// one of them for a moment has the whole pull tried again.
	delay := u.retryDelay
	if delay == 0 {
		delay = pullRetryDelay
	}
	for attempt := 1; ; attempt++ {
		files, err := u.pull(ctx, image, repo, hash, dir)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return files, fmt.Errorf("%w (the disk is full: free space on %s, where slipway unpacks images, then deploy again)", err, filepath.Dir(u.dir))
		}
		if err == nil || attempt == pullAttempts || !temporary(err) {
			return files, err
		}
		select {
		case <-ctx.Done():
			return files, err
		case <-time.After(delay):
		}
		delay *= 3
	}
}

// pullAttempts is how often a pull is tried when the registry fails for a
// moment, pullRetryDelay the first pause between tries (then threefold).
const pullAttempts = 3

const pullRetryDelay = 250 * time.Millisecond

// temporary reports whether a pull that failed with err may succeed when
// tried again: the registry answered 5xx, 408 or 429, or the connection
// broke.
func temporary(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.Temporary()
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}

// pull reads image (repo at hash) from the registry and unpacks it into
// dir.
func (u *unpacker) pull(ctx context.Context, image, repo string, hash v1.Hash, dir string) (imageFiles, error) {
	digest := hash.String()
	img, err := u.reg.Image(ctx, repo, hash)
	if err != nil {
		return imageFiles{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return imageFiles{}, fmt.Errorf("read config of %s: %w", image, err)
	}
	if err := runnable(image, cf); err != nil {
		return imageFiles{}, err
	}
	if err := os.MkdirAll(u.dir, 0o755); err != nil {
		return imageFiles{}, fmt.Errorf("create image directory: %w", err)
	}
	tmp, err := os.MkdirTemp(u.dir, ".unpack-")
	if err != nil {
		return imageFiles{}, fmt.Errorf("create image directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := unpackLayers(ctx, img, rootfs); err != nil {
		return imageFiles{}, fmt.Errorf("unpack %s: %w", image, err)
	}
	files := imageFiles{
		Digest:     digest,
		Rootfs:     filepath.Join(dir, "rootfs"),
		Entrypoint: cf.Config.Entrypoint,
		Cmd:        cf.Config.Cmd,
		Env:        cf.Config.Env,
		WorkingDir: cf.Config.WorkingDir,
		User:       cf.Config.User,
	}
	b, err := json.MarshalIndent(files, "", "  ")
	if err != nil {
		return imageFiles{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "image.json"), b, 0o644); err != nil {
		return imageFiles{}, fmt.Errorf("unpack %s: %w", image, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another slipway process may have unpacked it meanwhile.
		if files, rerr := readImageFiles(dir); rerr == nil {
			return files, nil
		}
		return imageFiles{}, fmt.Errorf("unpack %s: %w", image, err)
	}
	return files, nil
}

// runnable checks that this machine can run image, whose configuration is
// cf: built for linux and this machine's architecture (an image that does
// not say is taken as it is), with an entrypoint or a cmd.
func runnable(image string, cf *v1.ConfigFile) error {
	if goos, arch := cf.OS, cf.Architecture; goos != "" && goos != "linux" || arch != "" && arch != runtime.GOARCH {
		return fmt.Errorf("%w: %s is built for %s/%s; this machine runs linux/%s: build the image for linux/%s (FROM an image of that platform, or docker buildx --platform linux/%s)",
			ErrUnrunnableImage, image, goos, arch, runtime.GOARCH, runtime.GOARCH, runtime.GOARCH)
	}
	if len(cf.Config.Entrypoint)+len(cf.Config.Cmd) == 0 {
		return fmt.Errorf("%w: %s has neither entrypoint nor cmd: build it with one (ENTRYPOINT or CMD in its Dockerfile)", ErrUnrunnableImage, image)
	}
	return nil
}

func readImageFiles(dir string) (imageFiles, error) {
	var files imageFiles
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return files, err
	}
	if err := json.Unmarshal(b, &files); err != nil {
		return files, fmt.Errorf("%s: %w", dir, err)
	}
	return files, nil
}

// unpackLayers writes the image's layers, lowest first, into dir.
func unpackLayers(ctx context.Context, img v1.Image, dir string) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("list layers: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	budget := unpackLimits
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		err = untar(root, rc, &budget)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	// The places the replica's sandbox mounts things on.
	for _, d := range []string{"proc", "dev", "tmp", sandboxDataDir[1:]} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("prepare %s: %w", d, err)
		}
	}
	return root.Chmod("tmp", 0o777|fs.ModeSticky)
}

// entryPath checks a tar entry name and returns it relative to the root.
func entryPath(name string) (string, error) {
	if path.IsAbs(name) || strings.HasPrefix(name, `\`) {
		return "", fmt.Errorf("%w: entry %q has an absolute path; layer entries must be relative to the image root", ErrUnsafeImage, name)
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: entry %q climbs out of the image root with ..", ErrUnsafeImage, name)
	}
	return clean, nil
}

// limits bound what an image may unpack to, over all its layers: a layer
// that expands far beyond its compressed size (a decompression bomb, or a
// sparse file of terabytes) or holds millions of entries is refused rather
// than left to fill the disk or its inodes.
type limits struct {
	bytes   int64 // file contents
	entries int
}

// unpackLimits are the limits of one image; a variable for tests.
var unpackLimits = limits{bytes: 16 << 30, entries: 1_000_000}

// untar applies one layer to root: regular files, directories, links and
// whiteouts, within what is left of budget. Any entry that would land
// outside root is refused; os.Root also refuses to follow a link out of it
// while writing. Device nodes are refused, except under /dev, where the
// replica's sandbox mounts its own and they are skipped; fifos and sockets
// are skipped.
func untar(root *os.Root, r io.Reader, budget *limits) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		p, err := entryPath(h.Name)
		if err != nil {
			return err
		}
		if budget.entries--; budget.entries < 0 {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, unpackLimits.entries)
		}
		if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
			if p == "dev" || strings.HasPrefix(p, "dev/") {
				continue
			}
			return fmt.Errorf("%w: entry %q is a device node; an app image has none outside /dev", ErrUnsafeImage, h.Name)
		}
		if p == "." {
			continue
		}
		dir, base := path.Split(p)
		if dir == "" {
			dir = "."
		}
		if base == ".wh..wh..opq" {
			if err := clearDir(root, dir); err != nil {
				return fmt.Errorf("opaque whiteout %q: %w", h.Name, err)
			}
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			if err := root.RemoveAll(path.Join(dir, strings.TrimPrefix(base, ".wh."))); err != nil {
				return fmt.Errorf("whiteout %q: %w", h.Name, err)
			}
			continue
		}
		if dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, escapeErr(err))
			}
		}
		mode := fs.FileMode(h.Mode) & fs.ModePerm
		if h.Mode&04000 != 0 {
			mode |= fs.ModeSetuid
		}
		if h.Mode&02000 != 0 {
			mode |= fs.ModeSetgid
		}
		if h.Mode&01000 != 0 {
			mode |= fs.ModeSticky
		}
		if h.Typeflag != tar.TypeDir {
			if fi, err := root.Lstat(p); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
				if err := root.RemoveAll(p); err != nil {
					return fmt.Errorf("entry %q: replace: %w", h.Name, err)
				}
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, escapeErr(err))
			}
		case tar.TypeReg, tar.TypeGNUSparse: // a sparse file is read with its holes as zeros
			if h.Size > budget.bytes {
				return fmt.Errorf("%w: entry %q is %d bytes, beyond the image's limit of %d bytes unpacked", ErrTooLarge, h.Name, h.Size, unpackLimits.bytes)
			}
			budget.bytes -= h.Size
			f, err := root.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, escapeErr(err))
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			if linkEscapes(p, h.Linkname) {
				return fmt.Errorf("%w: symlink %q points to %q, outside the image root", ErrUnsafeImage, h.Name, h.Linkname)
			}
			if err := root.Symlink(h.Linkname, p); err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, escapeErr(err))
			}
			continue
		case tar.TypeLink:
			target, err := entryPath(h.Linkname)
			if err != nil {
				return fmt.Errorf("hard link %q: %w", h.Name, err)
			}
			if err := root.Link(target, p); err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, escapeErr(err))
			}
			continue
		default:
			// Devices, fifos and the like have no place in an app image.
			continue
		}
		if err := root.Chmod(p, mode); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		if os.Geteuid() == 0 {
			if err := root.Lchown(p, h.Uid, h.Gid); err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, err)
			}
		}
	}
}

// linkEscapes reports whether a symlink at p with the given target would
// point outside the root. Absolute targets are resolved against the root,
// as they are inside the replica's chroot.
func linkEscapes(p, target string) bool {
	if path.IsAbs(target) {
		return false
	}
	t := path.Clean(path.Join(path.Dir(p), target))
	return t == ".." || strings.HasPrefix(t, "../")
}

func clearDir(root *os.Root, dir string) error {
	f, err := root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := root.RemoveAll(path.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// escapeErr classifies os.Root's refusals to leave the root.
func escapeErr(err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	if (errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes")) ||
		(errors.As(err, &le) && strings.Contains(le.Err.Error(), "escapes")) {
		return fmt.Errorf("%w: %v", ErrUnsafeImage, err)
	}
	return err
}
