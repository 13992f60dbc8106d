package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/c2vm/c2vm/internal/descriptor"
)

// Timeouts bound each registry request; a zero field takes its default.
type Timeouts struct {
	Connect        time.Duration // TCP connect (default 30s)
	TLSHandshake   time.Duration // TLS handshake (default 15s)
	ResponseHeader time.Duration // from the request sent to the response's headers (default 60s)
	Idle           time.Duration // a response body that sends nothing for this long fails (default 60s)
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.TLSHandshake, 15*time.Second)
	def(&t.ResponseHeader, 60*time.Second)
	def(&t.Idle, 60*time.Second)
	return t
}

// PolicyError is a request the transport policy refused: plain HTTP to a host that is neither a
// loopback address nor an --insecure-registry host, or a scheme other than http and https.
type PolicyError struct {
	URL    string
	Reason string
}

func (e *PolicyError) Error() string { return fmt.Sprintf("refusing %s: %s", e.URL, e.Reason) }

// ErrStalled is a response body that sent nothing for Timeouts.Idle.
var ErrStalled = errors.New("the server stopped sending")

// transport applies one policy to every request c2vm makes — to the registry, to its token realm
// and to every redirect, each judged by its own host: TLS verified against the roots unless the
// host is an --insecure-registry host, plain HTTP only for those hosts and loopback addresses.
// Manifest responses are cut at descriptor.MaxManifest (containerd's resolver would otherwise read
// an endless one), and a body that stalls fails after the idle timeout.
type transport struct {
	verified, unverified *http.Transport
	insecure             []string
	idle                 time.Duration
}

func newTransport(insecure []string, t Timeouts, roots *x509.CertPool) *transport {
	t = t.withDefaults()
	mk := func(skip bool) *http.Transport {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = http.ProxyFromEnvironment
		tr.DialContext = (&net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = t.TLSHandshake
		tr.ResponseHeaderTimeout = t.ResponseHeader
		tr.IdleConnTimeout = 90 * time.Second
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, InsecureSkipVerify: skip} // skip only for --insecure-registry hosts
		return tr
	}
	return &transport{verified: mk(false), unverified: mk(true), insecure: insecure, idle: t.Idle}
}

// insecureHost reports whether host (host[:port]) was listed with --insecure-registry.
func (t *transport) insecureHost(host string) bool {
	return slices.Contains(t.insecure, host) || (host == "registry-1.docker.io" && slices.Contains(t.insecure, "docker.io"))
}

// plainAllowed reports whether host may be reached over plain HTTP.
func (t *transport) plainAllowed(host string) bool { return t.insecureHost(host) || isLoopback(host) }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	switch req.URL.Scheme {
	case "https":
	case "http":
		if !t.plainAllowed(host) {
			closeBody(req)
			return nil, &PolicyError{URL: "http://" + host, Reason: "plain HTTP is only for loopback addresses and --insecure-registry hosts"}
		}
	default:
		closeBody(req)
		return nil, &PolicyError{URL: req.URL.Scheme + "://" + host, Reason: "only https (and http for loopback and --insecure-registry hosts) is allowed"}
	}
	tr := t.verified
	if t.insecureHost(host) {
		tr = t.unverified
	}
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	b := &watchedBody{rc: resp.Body, idle: t.idle, cancel: cancel, left: -1}
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/manifests/") {
		b.left = descriptor.MaxManifest
	}
	b.timer = time.AfterFunc(t.idle, func() { b.stalled.Store(true); cancel() })
	resp.Body = b
	return resp, nil
}

// closeIdle drops the pooled connections (and their goroutines).
func (t *transport) closeIdle() {
	t.verified.CloseIdleConnections()
	t.unverified.CloseIdleConnections()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// watchedBody is a response body that fails when it stalls for idle, or (left >= 0) when it
// goes on past left bytes.
type watchedBody struct {
	rc      io.ReadCloser
	idle    time.Duration
	timer   *time.Timer
	stalled atomic.Bool
	cancel  context.CancelFunc
	left    int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.left >= 0 && int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if b.stalled.Load() {
		return 0, fmt.Errorf("%w for %s", ErrStalled, b.idle)
	}
	b.timer.Reset(b.idle)
	if b.left >= 0 {
		if int64(n) > b.left {
			return 0, fmt.Errorf("manifest response over the %d MiB limit", descriptor.MaxManifest>>20)
		}
		b.left -= int64(n)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}
