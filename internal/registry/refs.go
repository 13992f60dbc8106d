package registry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// refPath is where the descriptor a reference resolved to is remembered: refs/HOST/PATH/@TAG.json
// (or @sha256:HEX.json), so that a tag can fall back to it and a digest needs no registry.
func (c *Client) refPath(ref reference.Named) string {
	key := "latest"
	if d, ok := ref.(reference.Digested); ok {
		key = d.Digest().String()
	} else if t, ok := ref.(reference.Tagged); ok {
		key = t.Tag()
	}
	p := strings.ReplaceAll(reference.Path(ref), "..", "_")
	return filepath.Join(c.cacheDir, "refs", strings.ReplaceAll(reference.Domain(ref), ":", "_"), filepath.FromSlash(p), "@"+strings.ReplaceAll(key, ":", "_")+".json")
}

func (c *Client) savedRef(ref reference.Named) (ocispec.Descriptor, bool) {
	var d ocispec.Descriptor
	b, err := os.ReadFile(c.refPath(ref))
	if err != nil || json.Unmarshal(b, &d) != nil || d.Digest.Validate() != nil {
		return d, false
	}
	return d, true
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
