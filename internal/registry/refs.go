package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/cachedir"
)

// refPath is where the descriptor a reference resolved to is remembered, so that a tag can fall
// back to it and a digest needs no registry: refs/HOST/PATH/tag=TAG.json or
// refs/HOST/PATH/digest=ALG-HEX.json. A tag cannot contain "=", so the two never share a file.
func (c *Client) refPath(ref reference.Named) string {
	key := "tag=latest"
	if d, ok := ref.(reference.Digested); ok {
		key = "digest=" + d.Digest().Algorithm().String() + "-" + d.Digest().Encoded()
	} else if t, ok := ref.(reference.Tagged); ok {
		key = "tag=" + t.Tag()
	}
	p := strings.ReplaceAll(reference.Path(ref), "..", "_")
	return filepath.Join(cachedir.Dir(c.cacheDir).Refs(), strings.ReplaceAll(reference.Domain(ref), ":", "_"), filepath.FromSlash(p), key+".json")
}

// savedRef returns what ref resolved to last time, checked as a registry's answer is.
func (c *Client) savedRef(ref reference.Named) (ocispec.Descriptor, bool) {
	var d ocispec.Descriptor
	b, err := readSmall(c.refPath(ref), 64<<10)
	if err != nil || json.Unmarshal(b, &d) != nil || checkResolved(ref, d) != nil {
		return d, false
	}
	return d, true
}

// readSmall reads a regular file of at most max bytes.
func readSmall(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, max)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// saveRef remembers what ref resolved to, atomically; failures only cost the fallback.
func (c *Client) saveRef(ref reference.Named, d ocispec.Descriptor) {
	p := c.refPath(ref)
	if os.MkdirAll(filepath.Dir(p), 0o755) != nil {
		return
	}
	b, err := json.Marshal(ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".ref-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return
	}
	if os.Rename(tmp.Name(), p) != nil {
		os.Remove(tmp.Name())
	}
}
