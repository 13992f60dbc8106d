// Package descriptor checks OCI content descriptors taken from untrusted input — a registry, an
// index, a manifest, an image layout or a bundle — before any path or request is built from them:
// a well-formed digest of an algorithm c2vm can verify, a size within bounds and, where the caller
// knows what it expects, one of the media types it accepts. It also holds the size limits for the
// JSON documents c2vm reads from such input (containerd's are of the same order).
//
// See docs/registries.md (talking to a registry that may be hostile).
package descriptor

import (
	"bytes"
	_ "crypto/sha256" // digest algorithms go-digest verifies
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Limits on what c2vm reads whole into memory from a registry or a bundle.
const (
	// MaxManifest bounds an index or manifest (containerd: 4 MiB).
	MaxManifest = 4 << 20
	// MaxConfig bounds a config blob: an image config, bundle.json, a kernel artifact's config.
	MaxConfig = 8 << 20
)

// mediaTypeRE is the RFC 6838 form the image spec requires of media types.
var mediaTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`)

// Check validates d: its digest is well formed and of an algorithm that can be verified (so that
// d.Digest.Encoded() is plain hex, safe in a path), 0 <= size <= max (max < 0: no bound), and its
// media type is one of types — or, with no types, empty or of the media type form.
func Check(d ocispec.Descriptor, max int64, types ...string) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("descriptor digest %q: %w", Clip(string(d.Digest)), err)
	}
	if d.Size < 0 {
		return fmt.Errorf("descriptor %s: negative size %d", d.Digest, d.Size)
	}
	if max >= 0 && d.Size > max {
		return fmt.Errorf("descriptor %s: %d bytes is over the %d allowed here", d.Digest, d.Size, max)
	}
	switch {
	case len(types) > 0 && !slices.Contains(types, d.MediaType):
		return fmt.Errorf("descriptor %s: media type %q, want one of %q", d.Digest, Clip(d.MediaType), types)
	case len(types) == 0 && d.MediaType != "" && !mediaTypeRE.MatchString(d.MediaType):
		return fmt.Errorf("descriptor %s: malformed media type %q", d.Digest, Clip(d.MediaType))
	}
	return nil
}

// Clip keeps hostile strings short in error messages.
func Clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// Unmarshal decodes one JSON value from b into v and rejects trailing data.
func Unmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: data after the top-level value")
	}
	return nil
}
