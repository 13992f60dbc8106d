package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteserrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Describe turns a registry error into one line that names the registry and says what to do.
func Describe(ref reference.Named, err error) error { return describe(ref, err) }

func describe(ref reference.Named, err error) error {
	host := "the registry"
	name := "the reference"
	if ref != nil {
		host, name = reference.Domain(ref), reference.FamiliarString(ref)
	}
	var pe *PolicyError
	switch {
	case errors.As(err, &pe):
		return fmt.Errorf("registry %s: %s: %v (list the host with --insecure-registry only if you trust the network to it)", host, name, pe)
	case errors.Is(err, ErrStalled):
		return fmt.Errorf("registry %s: %s: %v", host, name, rootCause(err))
	case isTimeout(err):
		return fmt.Errorf("registry %s: %s: timed out: %v", host, name, rootCause(err))
	case isAuth(err):
		return fmt.Errorf("registry %s: access to %s denied (%s): log in with `docker login %s` (c2vm reads docker's config.json and credential helpers)", host, name, statusText(err), host)
	case isTLS(err):
		return fmt.Errorf("registry %s: TLS: %v: add the registry's CA to the system roots or point SSL_CERT_FILE at it (or --insecure-registry %s)", host, rootCause(err), host)
	case errdefs.IsNotFound(err) || status(err) == 404:
		return fmt.Errorf("registry %s: %s not found: check the repository and tag", host, name)
	case unreachable(err):
		return fmt.Errorf("registry %s: cannot reach it: %v", host, rootCause(err))
	}
	return fmt.Errorf("registry %s: %s: %w", host, name, err)
}

// describeBlob names the blob in a registry error.
func describeBlob(ref reference.Named, desc ocispec.Descriptor, err error) error {
	return fmt.Errorf("blob %s: %w", desc.Digest, describe(ref, err))
}

func status(err error) int {
	var us remoteserrors.ErrUnexpectedStatus
	if errors.As(err, &us) {
		return us.StatusCode
	}
	return 0
}

func statusText(err error) string {
	if s := status(err); s != 0 {
		return fmt.Sprintf("HTTP %d", s)
	}
	return rootCause(err).Error()
}

func isAuth(err error) bool {
	s := status(err)
	return s == 401 || s == 403 || errors.Is(err, docker.ErrInvalidAuthorization) || errdefs.IsUnauthorized(err) || errdefs.IsPermissionDenied(err)
}

func isTLS(err error) bool {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cv) || errors.As(err, &rh)
}

// isTimeout reports whether err is a connect, handshake or response-header timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unreachable reports whether err means the registry could not be reached at all.
func unreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH)
}

// rootCause is the innermost error, without the URL and request noise.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	if s := strings.TrimSpace(err.Error()); s == "" {
		return errors.New("unknown error")
	}
	return err
}
