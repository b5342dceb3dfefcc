package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	dref "github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

// Delete deletes the manifest digest from repo, and with it every tag that
// names it. A manifest that is not there is no error. Registries that do
// not allow deletes answer with an error saying so.
func (c *Client) Delete(ctx context.Context, repo string, d v1.Hash) error {
	r, err := c.Repository(repo)
	if err != nil {
		return err
	}
	ref := r.Digest(d.String())
	err = c.retry(ctx, func() error { return remote.Delete(ref, c.options(ctx)...) })
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", ref, err)
	}
	return nil
}

// Swept is what a sweep of the embedded registry removed.
type Swept struct {
	// Blobs and Bytes are the blobs deleted and their size.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Links are the repositories' links to layers no manifest of theirs
	// names any more.
	Links int `json:"links"`
	// Kept are unreferenced blobs left because they are younger than the
	// grace period: an upload in flight may be about to name them.
	Kept int `json:"keptYoung"`
}

// SweepGrace is how old an unreferenced blob must be before a sweep
// deletes it: a push uploads its blobs before the manifest that names
// them, and may take this long.
const SweepGrace = 30 * time.Minute

// Sweep deletes the blobs of the embedded registry that no manifest
// references any more (the manifests deleted through Delete leave theirs
// behind), and the repositories' links to them, when older than grace.
// While it runs, requests that write (push, tag, delete) wait: the
// distribution library's own mark and sweep is unsafe while pushes go on;
// here pushes only pause, and the blobs of a push in progress are young and
// kept. Reads go on.
func (e *Embedded) Sweep(ctx context.Context, grace time.Duration) (Swept, error) {
	e.gate.Lock()
	defer e.gate.Unlock()
	var sw Swept
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: e.dir, MaxThreads: 16})
	ns, err := storage.NewRegistry(ctx, drv, storage.EnableDelete)
	if err != nil {
		return sw, fmt.Errorf("sweep the embedded registry: %w", err)
	}
	repos, ok := ns.(distribution.RepositoryEnumerator)
	if !ok {
		return sw, errors.New("sweep the embedded registry: its storage cannot list repositories")
	}
	marked := map[digest.Digest]bool{}
	unlinked := map[string][]digest.Digest{}
	err = repos.Enumerate(ctx, func(repoName string) error {
		named, err := dref.WithName(repoName)
		if err != nil {
			return fmt.Errorf("repository %s: %w", repoName, err)
		}
		repo, err := ns.Repository(ctx, named)
		if err != nil {
			return err
		}
		ms, err := repo.Manifests(ctx)
		if err != nil {
			return err
		}
		me, ok := ms.(distribution.ManifestEnumerator)
		if !ok {
			return fmt.Errorf("repository %s: its manifests cannot be listed", repoName)
		}
		var mark func(d digest.Digest) error
		mark = func(d digest.Digest) error {
			marked[d] = true
			m, err := ms.Get(ctx, d)
			if err != nil {
				return fmt.Errorf("manifest %s@%s: %w", repoName, d, err)
			}
			for _, ref := range m.References() {
				if marked[ref.Digest] {
					continue
				}
				marked[ref.Digest] = true
				if ok, _ := ms.Exists(ctx, ref.Digest); ok {
					if err := mark(ref.Digest); err != nil {
						return err
					}
				}
			}
			return nil
		}
		err = me.Enumerate(ctx, mark)
		var pnf driver.PathNotFoundError
		if err != nil && !errors.As(err, &pnf) {
			return err
		}
		le, ok := repo.Blobs(ctx).(distribution.ManifestEnumerator)
		if !ok {
			return fmt.Errorf("repository %s: its layers cannot be listed", repoName)
		}
		// Links are checked after every repository is marked: a layer
		// of this repository may be named by a manifest of another.
		return le.Enumerate(ctx, func(d digest.Digest) error {
			unlinked[repoName] = append(unlinked[repoName], d)
			return nil
		})
	})
	var pnf driver.PathNotFoundError
	if errors.As(err, &pnf) {
		return sw, nil // nothing was ever pushed
	}
	if err != nil {
		return sw, fmt.Errorf("sweep the embedded registry: mark: %w", err)
	}
	young := func(p string) bool {
		fi, err := drv.Stat(ctx, p)
		return err == nil && time.Since(fi.ModTime()) < grace
	}
	vac := storage.NewVacuum(ctx, drv)
	var sweep []digest.Digest
	err = ns.Blobs().Enumerate(ctx, func(d digest.Digest) error {
		if !marked[d] {
			sweep = append(sweep, d)
		}
		return nil
	})
	if err != nil && !errors.As(err, &pnf) {
		return sw, fmt.Errorf("sweep the embedded registry: list blobs: %w", err)
	}
	for _, d := range sweep {
		p := blobDataPath(d)
		if young(p) {
			sw.Kept++
			continue
		}
		var size int64
		if fi, err := drv.Stat(ctx, p); err == nil {
			size = fi.Size()
		}
		if err := vac.RemoveBlob(d.String()); err != nil {
			var pnf driver.PathNotFoundError
			if errors.As(err, &pnf) {
				continue
			}
			return sw, fmt.Errorf("sweep the embedded registry: delete blob %s: %w", d, err)
		}
		sw.Blobs++
		sw.Bytes += size
	}
	for repo, ds := range unlinked {
		for _, d := range ds {
			if marked[d] || young(layerLinkPath(repo, d)) {
				continue
			}
			if err := vac.RemoveLayer(repo, d); err != nil {
				var pnf driver.PathNotFoundError
				if errors.As(err, &pnf) {
					continue
				}
				return sw, fmt.Errorf("sweep the embedded registry: delete the link of %s in %s: %w", d, repo, err)
			}
			sw.Links++
		}
	}
	// Uploads a client began and never finished.
	storage.PurgeUploads(ctx, drv, time.Now().Add(-max(grace, 24*time.Hour)), true)
	return sw, nil
}

// The distribution library's layout of its storage (paths.go there).
const storageRoot = "/docker/registry/v2"

func blobDataPath(d digest.Digest) string {
	hex := d.Encoded()
	return path.Join(storageRoot, "blobs", d.Algorithm().String(), hex[:2], hex, "data")
}

func layerLinkPath(repo string, d digest.Digest) string {
	return path.Join(storageRoot, "repositories", repo, "_layers", d.Algorithm().String(), d.Encoded(), "link")
}

// writes reports whether r changes the registry's contents.
func writes(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
