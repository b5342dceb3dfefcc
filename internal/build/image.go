package build

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// The user the application runs as in the image.
const (
	UID      = 65532
	UserName = "nonroot"
	HomeDir  = "/home/nonroot"
	// AppDir is where the binary goes: AppDir/<app name>.
	AppDir = "/app"
	// CACertsPath is where the CA certificates are in the image.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
)

// Labels on every image (OCI annotation keys).
const (
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	LabelVersion  = "org.opencontainers.image.version"
)

// baseTime is the time on every file of the base layer, so that the layer
// is the same bytes for every commit and every app.
var baseTime = time.Unix(0, 0).UTC()

// hostCACerts are where Linux distributions keep their CA bundle.
var hostCACerts = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",             // openSUSE
	"/etc/ssl/cert.pem",                  // Alpine, macOS
}

// readCACerts returns the host's CA bundle, or nil when it has none.
func readCACerts() ([]byte, string) {
	for _, p := range hostCACerts {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return b, p
		}
	}
	return nil, ""
}

type tarEntry struct {
	name     string
	mode     int64
	uid      int
	dir      bool
	body     []byte
	bodyFile string // read from this file instead of body
	size     int64
}

// writeTar writes entries with fixed owners and times: the same input
// always gives the same bytes.
func writeTar(w io.Writer, mtime time.Time, entries []tarEntry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.uid,
			ModTime: mtime,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
			if e.bodyFile != "" {
				h.Size = e.size
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if e.bodyFile != "" {
			f, err := os.Open(e.bodyFile)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, e.size)
			f.Close()
			if err != nil {
				return err
			}
		} else if len(e.body) > 0 {
			if _, err := tw.Write(e.body); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// baseLayer is slipway's minimal base: CA certificates, /etc/passwd and
// /etc/group with root and a non-root user, a home for it, /tmp, and
// nsswitch.conf for Go's resolver.
func baseLayer() (v1.Layer, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", UserName, UID, UID, UserName, HomeDir)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, UID)
	entries := []tarEntry{
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, body: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "etc/ssl", mode: 0o755, dir: true},
		{name: "etc/ssl/certs", mode: 0o755, dir: true},
	}
	if certs, _ := readCACerts(); certs != nil {
		entries = append(entries, tarEntry{name: CACertsPath[1:], mode: 0o644, body: certs})
	}
	entries = append(entries,
		tarEntry{name: "home", mode: 0o755, dir: true},
		tarEntry{name: HomeDir[1:], mode: 0o755, dir: true, uid: UID},
		tarEntry{name: "root", mode: 0o700, dir: true},
		tarEntry{name: "tmp", mode: 0o1777, dir: true},
	)
	var buf bytes.Buffer
	if err := writeTar(&buf, baseTime, entries); err != nil {
		return nil, fmt.Errorf("write base layer: %w", err)
	}
	return layerFromBytes(buf.Bytes())
}

// appLayer holds the binary at AppDir/app, dated mtime.
func appLayer(binary, app string, mtime time.Time) (v1.Layer, error) {
	fi, err := os.Stat(binary)
	if err != nil {
		return nil, fmt.Errorf("write app layer: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(int(fi.Size()) + 4096)
	err = writeTar(&buf, mtime, []tarEntry{
		{name: AppDir[1:], mode: 0o755, dir: true},
		{name: path.Join(AppDir[1:], app), mode: 0o755, bodyFile: binary, size: fi.Size()},
	})
	if err != nil {
		return nil, fmt.Errorf("write app layer: %w", err)
	}
	return layerFromBytes(buf.Bytes())
}

// memberSize is how much of a layer each gzip member holds. Members are
// compressed in parallel; a fixed size keeps the compressed bytes (and so
// the digest) the same on every machine, whatever its number of cores.
const memberSize = 8 << 20

// layerFromBytes makes a gzip layer of an uncompressed tar held in memory.
// The tar is compressed in members of memberSize (a gzip stream may hold
// several, and every gzip reader reads them all) at the fastest level,
// in parallel: the time saved is worth more than the few percent of size.
func layerFromBytes(b []byte) (v1.Layer, error) {
	n := (len(b) + memberSize - 1) / memberSize
	if n == 0 {
		n = 1
	}
	members := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	for i := range n {
		chunk := b[i*memberSize : min(len(b), (i+1)*memberSize)]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			members[i], errs[i] = gzipMember(chunk)
		}()
	}
	diffID := sha256.Sum256(b)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	compressed := bytes.Join(members, nil)
	digest := sha256.Sum256(compressed)
	return &memLayer{
		compressed:   compressed,
		uncompressed: b,
		digest:       v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(digest[:])},
		diffID:       v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diffID[:])},
	}, nil
}

// gzipMember compresses b into one gzip member with an empty header.
func gzipMember(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b)/2 + 1024)
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// memLayer is a layer held in memory, compressed and uncompressed.
type memLayer struct {
	compressed, uncompressed []byte
	digest, diffID           v1.Hash
}

var _ v1.Layer = (*memLayer)(nil)

func (l *memLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *memLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *memLayer) Size() (int64, error)     { return int64(len(l.compressed)), nil }
func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.uncompressed)), nil
}
func (l *memLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// imageSpec is what goes into an image besides the binary.
type imageSpec struct {
	App        string
	Commit     string
	CommitTime time.Time
	Source     string
	Port       int
	Arch       string
	// Labels are more labels, such as the schema's.
	Labels map[string]string
}

// buildImage assembles the OCI image: base layer, app layer, and a config
// with entrypoint, port, user and labels. Everything in it derives from
// its inputs, so one commit always gives one digest.
func buildImage(binary string, s imageSpec) (v1.Image, error) {
	base, err := baseLayer()
	if err != nil {
		return nil, err
	}
	app, err := appLayer(binary, s.App, s.CommitTime)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: s.CommitTime}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: baseTime}, CreatedBy: "slipway: base (CA certificates, users root and " + UserName + ", /tmp)", Comment: "slipway"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "slipway: go build " + s.App + " at " + s.Commit, Comment: "slipway"}},
	)
	if err != nil {
		return nil, fmt.Errorf("assemble image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("assemble image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = s.Arch
	cf.OS = "linux"
	cf.Created = created
	port := strconv.Itoa(s.Port)
	short := s.Commit
	if len(short) > 7 {
		short = short[:7]
	}
	cf.Config = v1.Config{
		Entrypoint:   []string{path.Join(AppDir, s.App)},
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PORT=" + port, "SSL_CERT_FILE=" + CACertsPath, "HOME=" + HomeDir},
		ExposedPorts: map[string]struct{}{port + "/tcp": {}},
		User:         fmt.Sprintf("%d:%d", UID, UID),
		WorkingDir:   HomeDir,
		Labels: withLabels(map[string]string{
			LabelRevision: s.Commit,
			LabelSource:   s.Source,
			LabelCreated:  s.CommitTime.UTC().Format(time.RFC3339),
			LabelTitle:    s.App,
			LabelVersion:  short,
		}, s.Labels),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("assemble image: %w", err)
	}
	return img, nil
}
