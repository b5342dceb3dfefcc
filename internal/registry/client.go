package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"slipway.dev/slipway/internal/crashpoint"
)

// ErrNotFound is returned when a tag, digest or repository does not exist
// in the registry.
var ErrNotFound = errors.New("not found in the registry")

// Client talks to an OCI registry. Credentials come from the Docker
// configuration (~/.docker/config.json, $DOCKER_CONFIG) and its credential
// helpers; failed requests are retried with exponential backoff.
type Client struct {
	insecure bool
	backoff  remote.Backoff
	keychain authn.Keychain
	rt       http.RoundTripper
}

// Option changes a Client.
type Option func(*Client)

// Insecure allows plain HTTP and unverified TLS (for registries named with
// insecure: true). Registries on localhost and 127.0.0.1 use plain HTTP
// regardless.
func Insecure(insecure bool) Option { return func(c *Client) { c.insecure = insecure } }

// WithBackoff replaces the retry schedule (tests shorten it).
func WithBackoff(b remote.Backoff) Option { return func(c *Client) { c.backoff = b } }

// WithKeychain replaces the Docker-configuration keychain.
func WithKeychain(k authn.Keychain) Option { return func(c *Client) { c.keychain = k } }

// DefaultBackoff is the retry schedule of each request: 4 attempts, 0.25 s
// growing threefold. A whole operation is tried up to 3 times on the same
// schedule (the registry's first answer, the API check, is not retried by
// the request-level schedule).
var DefaultBackoff = remote.Backoff{Duration: 250 * time.Millisecond, Factor: 3, Jitter: 0.1, Steps: 4}

// operationAttempts is how often an operation is tried in all.
const operationAttempts = 3

var retryStatus = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// retry runs op until it succeeds, fails for a reason retrying cannot fix,
// or has been tried operationAttempts times.
func (c *Client) retry(ctx context.Context, op func() error) error {
	delay := c.backoff.Duration
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !retryableOperation(err) {
			return err
		}
		if attempt == operationAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = time.Duration(float64(delay) * c.backoff.Factor)
	}
}

func retryableOperation(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		return slices.Contains(retryStatus, te.StatusCode)
	}
	return retryable(err)
}

// NewClient returns a client.
func NewClient(opts ...Option) *Client {
	c := &Client{backoff: DefaultBackoff, keychain: authn.DefaultKeychain}
	for _, o := range opts {
		o(c)
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	if c.insecure {
		t.TLSClientConfig.InsecureSkipVerify = true
	}
	c.rt = t
	return c
}

// Close closes the client's idle connections, so that a server stopping
// right after does not wait for them.
func (c *Client) Close() {
	if t, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// retryable is go-containerregistry's default predicate plus refused
// connections: a registry that is restarting refuses for a moment.
func retryable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || isEOF(err)
}

func isEOF(err error) bool {
	for err != nil {
		if err.Error() == "EOF" || err.Error() == "unexpected EOF" {
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}

func (c *Client) options(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.rt),
		remote.WithRetryBackoff(c.backoff),
		remote.WithRetryPredicate(retryable),
		remote.WithRetryStatusCodes(retryStatus...),
	}
}

func (c *Client) nameOptions() []name.Option {
	if c.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// Repository parses a repository name such as 127.0.0.1:5000/app.
func (c *Client) Repository(repo string) (name.Repository, error) {
	r, err := name.NewRepository(repo, c.nameOptions()...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("repository %q: %w", repo, err)
	}
	return r, nil
}

// classify turns a registry's "not found" answers into ErrNotFound.
func classify(err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %w", ErrNotFound, err)
			}
		}
	}
	return err
}

// Digest returns the digest of the manifest that repo:tag (or repo@digest)
// names. ErrNotFound when there is none.
func (c *Client) Digest(ctx context.Context, repo, tag string) (v1.Hash, error) {
	r, err := c.Repository(repo)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := reference(r, tag)
	if err != nil {
		return v1.Hash{}, err
	}
	var d *v1.Descriptor
	err = c.retry(ctx, func() (err error) { d, err = remote.Head(ref, c.options(ctx)...); return err })
	if err != nil {
		return v1.Hash{}, fmt.Errorf("look up %s: %w", ref, classify(err))
	}
	return d.Digest, nil
}

func reference(r name.Repository, tagOrDigest string) (name.Reference, error) {
	if len(tagOrDigest) > 7 && tagOrDigest[:7] == "sha256:" {
		d, err := name.NewDigest(r.String()+"@"+tagOrDigest, name.WithDefaultRegistry(r.RegistryStr()))
		if err != nil {
			return nil, fmt.Errorf("digest %q: %w", tagOrDigest, err)
		}
		return d, nil
	}
	t, err := name.NewTag(r.String()+":"+tagOrDigest, name.WithDefaultRegistry(r.RegistryStr()))
	if err != nil {
		return nil, fmt.Errorf("tag %q: %w", tagOrDigest, err)
	}
	return t, nil
}

// Tags lists the repository's tags. A repository that does not exist yet
// has none.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	r, err := c.Repository(repo)
	if err != nil {
		return nil, err
	}
	var tags []string
	err = c.retry(ctx, func() (err error) { tags, err = remote.List(r, c.options(ctx)...); return err })
	if err != nil {
		if err := classify(err); errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list tags of %s: %w", r, err)
	}
	return tags, nil
}

// Tag points repo:tag at the manifest with the given digest, which must
// already be in the repository.
func (c *Client) Tag(ctx context.Context, repo, tag string, digest v1.Hash) error {
	r, err := c.Repository(repo)
	if err != nil {
		return err
	}
	src, err := reference(r, digest.String())
	if err != nil {
		return err
	}
	var desc *remote.Descriptor
	err = c.retry(ctx, func() (err error) { desc, err = remote.Get(src, c.options(ctx)...); return err })
	if err != nil {
		return fmt.Errorf("tag %s as %s: %w", src, tag, classify(err))
	}
	dst, err := reference(r, tag)
	if err != nil {
		return err
	}
	if err := c.retry(ctx, func() error { return remote.Tag(dst.(name.Tag), desc, c.options(ctx)...) }); err != nil {
		return fmt.Errorf("tag %s as %s: %w", src, tag, err)
	}
	return nil
}

// Untag deletes repo:tag; the image stays (under its digest, and any other
// tag). A tag that does not exist is not an error.
func (c *Client) Untag(ctx context.Context, repo, tag string) error {
	r, err := c.Repository(repo)
	if err != nil {
		return err
	}
	ref, err := reference(r, tag)
	if err != nil {
		return err
	}
	err = c.retry(ctx, func() error { return remote.Delete(ref, c.options(ctx)...) })
	if err != nil && !errors.Is(classify(err), ErrNotFound) {
		return fmt.Errorf("delete tag %s: %w", ref, classify(err))
	}
	return nil
}

// Image returns the image repo@digest (layers are fetched as they are read).
func (c *Client) Image(ctx context.Context, repo string, digest v1.Hash) (v1.Image, error) {
	r, err := c.Repository(repo)
	if err != nil {
		return nil, err
	}
	ref, err := reference(r, digest.String())
	if err != nil {
		return nil, err
	}
	var img v1.Image
	err = c.retry(ctx, func() (err error) { img, err = remote.Image(ref, c.options(ctx)...); return err })
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, classify(err))
	}
	return img, nil
}

// Push uploads img to repo by digest and, once the manifest is complete,
// points each tag at it in the order given. It returns the digest. If it
// fails part way, every tag already written points at this complete image.
func (c *Client) Push(ctx context.Context, repo string, img v1.Image, tags ...string) (v1.Hash, error) {
	r, err := c.Repository(repo)
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push to %s: %w", r, err)
	}
	ref, err := reference(r, digest.String())
	if err != nil {
		return v1.Hash{}, err
	}
	if err := c.retry(ctx, func() error { return remote.Write(ref, img, c.options(ctx)...) }); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	crashpoint.Hit("registry.pushed")
	for _, tag := range tags {
		t, err := reference(r, tag)
		if err != nil {
			return v1.Hash{}, err
		}
		if err := c.retry(ctx, func() error { return remote.Tag(t.(name.Tag), img, c.options(ctx)...) }); err != nil {
			return v1.Hash{}, fmt.Errorf("tag %s as %s: %w", ref, tag, err)
		}
		crashpoint.Hit("registry.pushed.tag")
	}
	return digest, nil
}
