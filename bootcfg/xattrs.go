package bootcfg

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
)

// XattrsSuffix names the file beside an initrd-format rootfs (Rootfs.Path + XattrsSuffix) that
// carries the extended attributes newc cpio cannot hold — file capabilities above all. The init
// sets them on the unpacked files before it mounts the rootfs.
const XattrsSuffix = ".xattrs"

// Xattr is one extended attribute of a file below the rootfs.
type Xattr struct {
	Path  string `json:"path"` // relative to the rootfs, clean, no ".."
	Name  string `json:"name"` // e.g. security.capability
	Value []byte `json:"value"`
}

// EncodeXattrs writes one JSON object per line, in the order given.
func EncodeXattrs(w io.Writer, xs []Xattr) error {
	enc := json.NewEncoder(w)
	for _, x := range xs {
		if err := enc.Encode(x); err != nil {
			return fmt.Errorf("encode xattrs: %w", err)
		}
	}
	return nil
}

// DecodeXattrs reads EncodeXattrs' output and checks every path and name.
func DecodeXattrs(r io.Reader) ([]Xattr, error) {
	var out []Xattr
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var x Xattr
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			return nil, fmt.Errorf("xattrs line %d: %w", n, err)
		}
		if x.Path == "" || x.Path != path.Clean(x.Path) || path.IsAbs(x.Path) || x.Path == ".." || strings.HasPrefix(x.Path, "../") {
			return nil, fmt.Errorf("xattrs line %d: path %q is not clean and relative", n, x.Path)
		}
		if !strings.Contains(x.Name, ".") || strings.ContainsAny(x.Name, "\x00/") || len(x.Name) > 255 {
			return nil, fmt.Errorf("xattrs line %d: %q is not an xattr name", n, x.Name)
		}
		out = append(out, x)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("xattrs: %w", err)
	}
	return out, nil
}
