package image

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// Transport names accepted in references.
const (
	TransportOCI           = "oci"
	TransportOCIArchive    = "oci-archive"
	TransportDockerArchive = "docker-archive"
)

// otherTransports are containers-transports names c2vm knows of but does not read (yet); naming
// them gives a clear error instead of treating "docker://x" as a file path.
var otherTransports = []string{"docker-daemon", "containers-storage", "dir", "sif", "tarball", "ostree"}

// Ref is a parsed image reference. Transport is "" for a bare path, whose kind Open detects from
// its content. Tag is the OCI ref name for oci and oci-archive, and NAME:TAG for docker-archive.
type Ref struct {
	Transport, Path, Tag string
}

// String returns the reference in the form ParseRef accepts.
func (r Ref) String() string {
	if r.Transport == TransportDocker {
		return "docker://" + r.Path
	}
	s := r.Path
	if r.Transport != "" {
		s = r.Transport + ":" + s
	}
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	return s
}

// ParseRef parses an image reference without touching the filesystem. As in containers/image, the
// path ends at its first ':' when a transport is given, so such paths cannot contain ':'. A bare
// path is returned whole with an empty Transport and Tag.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, errors.New("empty image reference: give a path or oci:DIR, oci-archive:FILE, docker-archive:FILE")
	}
	if strings.ContainsRune(s, 0) {
		return Ref{}, fmt.Errorf("image reference %q contains a NUL byte", s)
	}
	transport, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return Ref{Path: s}, nil
	case transport == TransportOCI, transport == TransportOCIArchive, transport == TransportDockerArchive:
		return parseWithTransport(transport, rest)
	case transport == TransportDocker && strings.HasPrefix(rest, "//"):
		return Ref{Transport: TransportDocker, Path: strings.TrimPrefix(rest, "//")}, nil
	case isOtherTransport(transport, rest):
		return Ref{}, fmt.Errorf("image reference %q: transport %q is not supported; use oci:DIR, oci-archive:FILE or docker-archive:FILE", s, transport)
	}
	return Ref{Path: s}, nil
}

func isOtherTransport(transport, rest string) bool {
	for _, t := range otherTransports {
		if transport == t {
			return true
		}
	}
	return strings.HasPrefix(rest, "//") && transport != "" && !strings.ContainsAny(transport, "/.")
}

func parseWithTransport(transport, rest string) (Ref, error) {
	path, tag, _ := strings.Cut(rest, ":")
	if path == "" {
		return Ref{}, fmt.Errorf("image reference %q: missing path after %q", transport+":"+rest, transport+":")
	}
	r := Ref{Transport: transport, Path: path, Tag: tag}
	if err := validateTag(transport, tag); err != nil {
		return Ref{}, fmt.Errorf("image reference %q: %w", r.String(), err)
	}
	return r, nil
}

func validateTag(transport, tag string) error {
	if tag == "" {
		return nil
	}
	for _, c := range tag {
		if c < 0x21 || c == 0x7f {
			return fmt.Errorf("tag %q contains a space or control character", tag)
		}
	}
	if transport != TransportDockerArchive {
		return nil
	}
	if strings.HasPrefix(tag, "@") {
		return fmt.Errorf("tag %q: docker-archive:FILE:@N (image index) is not supported; name the image as NAME:TAG", tag)
	}
	name, _ := splitNameTag(tag)
	if name == "" || strings.HasSuffix(name, "/") || strings.HasPrefix(name, "/") {
		return fmt.Errorf("tag %q: want NAME[:TAG] such as busybox:latest", tag)
	}
	return nil
}

// splitNameTag splits "example.com:5000/x/y:tag" into name and tag; the tag is "" when absent.
func splitNameTag(s string) (name, tag string) {
	i := strings.LastIndex(s, ":")
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// normalizeDockerName turns "busybox", "library/busybox:latest" and
// "docker.io/library/busybox:latest" into one comparable form, "docker.io/library/busybox:latest".
func normalizeDockerName(s string) string {
	if r, err := reference.ParseDockerRef(s); err == nil {
		return r.String()
	}
	return s
}
