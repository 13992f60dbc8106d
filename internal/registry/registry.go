// Package registry talks to OCI registries through containerd's docker remotes (resolver, fetcher,
// pusher): references by docker's rules, credentials as docker users have them
// ($DOCKER_CONFIG/config.json: auths, credsStore, credHelpers), TLS verified against the system
// roots (SSL_CERT_FILE honoured), plain HTTP only for loopback addresses and --insecure-registry
// hosts. Blobs pass through a content-addressed cache (containerd's local content store: written
// to an ingest file, verified by digest and size, then renamed), so concurrent users never see a
// partial blob and a digest reference works with the registry down.
//
// See docs/registries.md.
package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/descriptor"
)

// Options configure a Client. The zero value uses docker's config, the user cache dir and TLS.
type Options struct {
	// Insecure lists registry hosts (host[:port]) reached over plain HTTP or unverified TLS.
	Insecure []string
	// DockerConfig is the docker config file; "" = $DOCKER_CONFIG/config.json, else
	// ~/.docker/config.json.
	DockerConfig string
	// CacheDir holds the blob cache (CacheDir/blobs/sha256/...) and the references seen
	// (CacheDir/refs); "" = cachedir.Default().
	CacheDir string
	// Warn receives one-line warnings (a cached tag used while the registry is unreachable).
	Warn func(string)
	// Timeouts bound each request; the zero value takes the defaults.
	Timeouts Timeouts
}

// Client is a registry client with a blob cache.
type Client struct {
	opts     Options
	resolver remotes.Resolver
	cache    content.Store
	cacheDir string

	trOnce sync.Once
	tr     *transport
	trErr  error
}

// New returns a client.
func New(opts Options) (*Client, error) {
	root, err := cachedir.Or(opts.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("registry cache: %w", err)
	}
	dir := root.Path()
	quietOnce.Do(func() { log.L = quietEntry() })
	cache, err := local.NewStore(dir)
	if err != nil {
		return nil, fmt.Errorf("registry cache %s: %w", dir, err)
	}
	c := &Client{opts: opts, cache: cache, cacheDir: dir}
	c.resolver = docker.NewResolver(docker.ResolverOptions{Hosts: c.hosts})
	return c, nil
}

// quietOnce silences containerd's global logger (its content store warns through it, e.g. about
// fs-verity): c2vm's library code never prints.
var quietOnce sync.Once

func quietEntry() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// Quiet returns ctx with containerd's logger silenced: library code never prints.
func Quiet(ctx context.Context) context.Context { return log.WithLogger(ctx, quietEntry()) }

// rootCAs is the CA pool TLS verifies against: SSL_CERT_FILE's when set (read at each use, where
// Go's own pool reads it once per process), else the system roots.
func rootCAs() (*x509.CertPool, error) {
	f := os.Getenv("SSL_CERT_FILE")
	if f == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("SSL_CERT_FILE: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("SSL_CERT_FILE %s: no PEM certificates", f)
	}
	return p, nil
}

// ParseReference parses a registry reference by docker's rules (busybox is
// docker.io/library/busybox:latest); an optional docker:// prefix is dropped.
func ParseReference(s string) (reference.Named, error) {
	s = strings.TrimPrefix(s, "docker://")
	named, err := reference.ParseDockerRef(s)
	if err != nil {
		return nil, fmt.Errorf("registry reference %q: %w", s, err)
	}
	return named, nil
}

// LooksLikeReference reports whether s names a registry image by docker's rule: a docker://
// prefix, or a first path component with a dot or a colon, or localhost.
func LooksLikeReference(s string) bool {
	if strings.HasPrefix(s, "docker://") {
		return true
	}
	first, _, ok := strings.Cut(s, "/")
	if !ok || !(strings.ContainsAny(first, ".:") || first == "localhost") {
		return false
	}
	_, err := ParseReference(s)
	return err == nil
}

// CacheDir returns the client's cache directory.
func (c *Client) CacheDir() string { return c.cacheDir }

// hosts configures one registry host: https (docker.io is registry-1.docker.io), falling back to
// plain HTTP for loopback and insecure hosts. Every request — to the registry, its token realm,
// a redirect — goes through the client's one transport, which judges each by its own host.
func (c *Client) hosts(host string) ([]docker.RegistryHost, error) {
	tr, err := c.transport()
	if err != nil {
		return nil, err
	}
	var rt http.RoundTripper = tr
	if tr.plainAllowed(host) {
		rt = docker.NewHTTPFallback(tr)
	}
	client := &http.Client{Transport: rt}
	name := host
	if host == "docker.io" {
		name = "registry-1.docker.io"
	}
	// Credentials are looked up by the registry's host and sent to it or to the token realm it
	// names, over what the transport allows for that realm's own host.
	auth := docker.NewDockerAuthorizer(docker.WithAuthClient(client), docker.WithAuthCreds(c.credentials))
	return []docker.RegistryHost{{
		Client: client, Authorizer: auth, Host: name, Scheme: "https", Path: "/v2",
		Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush,
	}}, nil
}

// transport returns the client's transport, made at first use (SSL_CERT_FILE read then).
func (c *Client) transport() (*transport, error) {
	c.trOnce.Do(func() {
		roots, err := rootCAs()
		if err != nil {
			c.trErr = err
			return
		}
		c.tr = newTransport(c.opts.Insecure, c.opts.Timeouts, roots)
	})
	return c.tr, c.trErr
}

// Close releases the client's idle connections.
func (c *Client) Close() {
	if c.tr != nil {
		c.tr.closeIdle()
	}
}

func isLoopback(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ManifestTypes are the media types a reference may resolve to: an index or a manifest, OCI or
// Docker.
var ManifestTypes = []string{ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, images.MediaTypeDockerSchema2ManifestList, images.MediaTypeDockerSchema2Manifest}

// Resolve returns the descriptor a reference names and the name to fetch it with. A digest
// reference whose blob is cached needs no registry; a tag falls back to the digest it had last
// time (with a warning) when the registry cannot be reached. The descriptor is checked (digest,
// size within descriptor.MaxManifest, an index or manifest type) and, for a digest reference,
// must carry that digest.
func (c *Client) Resolve(ctx context.Context, ref reference.Named) (string, ocispec.Descriptor, error) {
	name := ref.String()
	if saved, ok := c.savedRef(ref); ok {
		if _, isDigest := ref.(reference.Digested); isDigest {
			if _, err := c.cache.Info(ctx, saved.Digest); err == nil {
				return name, saved, nil
			}
		}
	}
	_, desc, err := c.resolver.Resolve(Quiet(ctx), name)
	if err == nil {
		if err := checkResolved(ref, desc); err != nil {
			return "", ocispec.Descriptor{}, fmt.Errorf("registry %s: %s: %w", reference.Domain(ref), reference.FamiliarString(ref), err)
		}
		c.saveRef(ref, desc)
		return name, desc, nil
	}
	if saved, ok := c.savedRef(ref); ok && unreachable(err) {
		if c.opts.Warn != nil {
			c.opts.Warn(fmt.Sprintf("registry %s is unreachable (%v); using the cached %s (%s)", reference.Domain(ref), rootCause(err), reference.FamiliarString(ref), saved.Digest))
		}
		return name, saved, nil
	}
	return "", ocispec.Descriptor{}, describe(ref, err)
}

// checkResolved checks what a reference resolved to (from the registry or the refs cache).
func checkResolved(ref reference.Named, d ocispec.Descriptor) error {
	if err := descriptor.Check(d, descriptor.MaxManifest, ManifestTypes...); err != nil {
		return err
	}
	if pinned, ok := ref.(reference.Digested); ok && d.Digest != pinned.Digest() {
		return fmt.Errorf("the registry answered with %s for the pinned digest %s", d.Digest, pinned.Digest())
	}
	return nil
}

// Open returns a blob's content: from the cache, else from the registry while it is written to
// the cache (committed only when its size and digest check out). The descriptor is checked first;
// what is read stops at its size (more or less data is an error). The caller verifies the digest
// of what it reads; a blob that another process is caching at the same time is streamed without
// caching.
func (c *Client) Open(ctx context.Context, name string, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return c.open(ctx, name, desc, true)
}

// Stream is Open without caching what it fetches: for blobs that land in a verified directory of
// their own (a pulled bundle or kernel), so that they are not kept twice.
func (c *Client) Stream(ctx context.Context, name string, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return c.open(ctx, name, desc, false)
}

func (c *Client) open(ctx context.Context, name string, desc ocispec.Descriptor, keep bool) (io.ReadCloser, error) {
	if err := descriptor.Check(desc, -1); err != nil {
		return nil, err
	}
	if ra, err := c.cache.ReaderAt(ctx, desc); err == nil {
		if ra.Size() != desc.Size {
			ra.Close()
			return nil, fmt.Errorf("blob %s: cached with %d bytes, the descriptor says %d: run c2vm cache prune", desc.Digest, ra.Size(), desc.Size)
		}
		return &readerAtCloser{Reader: io.NewSectionReader(ra, 0, ra.Size()), c: ra}, nil
	}
	f, err := c.resolver.Fetcher(Quiet(ctx), name)
	if err != nil {
		return nil, err
	}
	rc, err := f.Fetch(Quiet(ctx), desc)
	if err != nil {
		ref, _ := ParseReference(name)
		return nil, describeBlob(ref, desc, err)
	}
	rc = &sized{rc: rc, left: desc.Size, desc: desc}
	if !keep {
		return rc, nil
	}
	// A ref of its own per download: the store's locks are per process, so two converts sharing
	// the cache must never write one ingest file; each commits by an atomic rename.
	ref := fmt.Sprintf("c2vm-%s-%d-%d", desc.Digest.Encoded(), os.Getpid(), ingestSeq.Add(1))
	w, err := c.cache.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil { // e.g. cached meanwhile by another download: stream only
		return rc, nil
	}
	return &caching{ctx: ctx, r: rc, w: w, ref: ref, desc: desc, store: c.cache}, nil
}

// ReadBlob reads a whole (small) blob, at most max bytes, and verifies its size and digest.
func (c *Client) ReadBlob(ctx context.Context, name string, desc ocispec.Descriptor, max int64) ([]byte, error) {
	if err := descriptor.Check(desc, max); err != nil {
		return nil, err
	}
	rc, err := c.Open(ctx, name, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if int64(len(b)) != desc.Size || desc.Digest.Algorithm().FromBytes(b) != desc.Digest {
		return nil, fmt.Errorf("blob %s: digest or size mismatch: the registry sent other content", desc.Digest)
	}
	return b, nil
}

// sized passes on exactly the declared size of a blob: a stream that ends early or goes on is an
// error, and nothing past the size is read but one byte.
type sized struct {
	rc   io.ReadCloser
	left int64
	desc ocispec.Descriptor
}

func (s *sized) Read(p []byte) (int, error) {
	if s.left == 0 {
		var one [1]byte
		if n, err := s.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("blob %s: the registry sent more than its %d bytes", s.desc.Digest, s.desc.Size)
		} else if err != nil && err != io.EOF {
			return 0, err
		} else if err == nil {
			return 0, nil
		}
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.rc.Read(p)
	s.left -= int64(n)
	if err == io.EOF && s.left > 0 {
		return n, fmt.Errorf("blob %s: the registry sent %d of its %d bytes: %w", s.desc.Digest, s.desc.Size-s.left, s.desc.Size, io.ErrUnexpectedEOF)
	}
	if err == io.EOF {
		err = nil // reported after the probe for extra bytes
	}
	return n, err
}

func (s *sized) Close() error { return s.rc.Close() }

// Pusher returns a pusher for ref.
func (c *Client) Pusher(ctx context.Context, ref reference.Named) (remotes.Pusher, error) {
	return c.resolver.Pusher(Quiet(ctx), ref.String())
}

// Push uploads one blob or manifest unless the registry has it; it reports whether it did.
func (c *Client) Push(ctx context.Context, p remotes.Pusher, desc ocispec.Descriptor, r io.Reader) (bool, error) {
	w, err := p.Push(Quiet(ctx), desc)
	if errdefs.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return false, err
	}
	if err := w.Commit(Quiet(ctx), desc.Size, desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		return false, err
	}
	return true, nil
}

type readerAtCloser struct {
	io.Reader
	c io.Closer
}

func (r *readerAtCloser) Close() error { return r.c.Close() }

// caching copies what is read into the cache writer and commits once the whole blob went through
// (the store checks size and digest then; a mismatch is simply not cached).
type caching struct {
	ctx   context.Context
	r     io.ReadCloser
	w     content.Writer
	desc  ocispec.Descriptor
	store content.Store
	ref   string
	n     int64
}

// ingestSeq numbers this process's downloads.
var ingestSeq atomic.Int64

func (c *caching) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && c.w != nil {
		c.n += int64(n)
		if _, werr := c.w.Write(p[:n]); werr != nil {
			c.abort()
		}
	}
	if c.w != nil && (c.n >= c.desc.Size || errors.Is(err, io.EOF)) {
		if cerr := c.w.Commit(c.ctx, c.desc.Size, c.desc.Digest); cerr != nil && !errdefs.IsAlreadyExists(cerr) {
			c.abort()
		} else {
			c.w.Close()
			c.w = nil
		}
	}
	return n, err
}

// abort drops the partial blob.
func (c *caching) abort() {
	if c.w != nil {
		c.w.Close()
		c.store.Abort(c.ctx, c.ref)
		c.w = nil
	}
}

func (c *caching) Close() error {
	c.abort()
	return c.r.Close()
}
