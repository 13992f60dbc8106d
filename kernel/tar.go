package kernel

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/c2vm/c2vm/internal/decompress"
)

// openTar returns a tar reader over an ar member named like "data.tar.xz", decompressing by its
// suffix, and a function that releases the decompressor.
func openTar(m arMember) (*tar.Reader, func(), error) {
	format, ok := decompress.ByExt(m.Name)
	if !ok && !strings.HasSuffix(m.Name, ".tar") {
		return nil, nil, fmt.Errorf("%s: unsupported compression %q", m.Name, strings.TrimPrefix(path.Ext(m.Name), "."))
	}
	r, err := decompress.NewReader(bufio.NewReaderSize(m.Data, 1<<20), format, decompress.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	return tar.NewReader(r), func() { r.Close() }, nil
}

// kernelPath maps a path in a kernel package's data.tar to where it is unpacked, or "" for files
// c2vm does not need. usr/lib/modules (merged /usr) is unpacked as lib/modules.
func kernelPath(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("unsafe path %q in package", name)
		}
	}
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	switch {
	case p == "boot" || strings.HasPrefix(p, "boot/"):
		return p, nil
	case p == "lib/modules" || strings.HasPrefix(p, "lib/modules/"):
		return p, nil
	case p == "usr/lib/modules" || strings.HasPrefix(p, "usr/lib/modules/"):
		return strings.TrimPrefix(p, "usr/"), nil
	}
	return "", nil
}

// tarLimits bound what extractTar unpacks from one package.
type tarLimits struct {
	total   int64 // bytes of regular files extracted
	file    int64 // bytes of one regular file
	entries int   // tar entries read, extracted or not
}

// debLimits are generous for real kernel packages (Debian's largest unpack to ~500 MiB in a few
// thousand files) and stop a package crafted to fill the disk.
var debLimits = tarLimits{total: 1 << 30, file: 256 << 20, entries: 100_000}

// extractTar unpacks the kernel image and module tree from tr into dir. Symbolic links (e.g.
// lib/modules/<v>/build) are skipped; hard links are recreated inside dir.
func extractTar(tr *tar.Reader, dir string) error {
	return extractTarLimited(tr, dir, debLimits)
}

func extractTarLimited(tr *tar.Reader, dir string, lim tarLimits) error {
	var total int64
	for count := 1; ; count++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read data.tar: %w", err)
		}
		if count > lim.entries {
			return fmt.Errorf("data.tar has more than %d entries", lim.entries)
		}
		rel, err := kernelPath(h.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		if h.Typeflag == tar.TypeReg {
			if h.Size > lim.file {
				return fmt.Errorf("unpack %s: %d bytes, over the %s limit for one file", h.Name, h.Size, sizeString(lim.file))
			}
			if total += h.Size; total > lim.total {
				return fmt.Errorf("unpack %s: the package unpacks to over %s", h.Name, sizeString(lim.total))
			}
		}
		if err := extractEntry(tr, h, dir, rel); err != nil {
			return fmt.Errorf("unpack %s: %w", h.Name, err)
		}
	}
}

func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

func extractEntry(tr *tar.Reader, h *tar.Header, dir, rel string) error {
	dst := filepath.Join(dir, filepath.FromSlash(rel))
	switch h.Typeflag {
	case tar.TypeDir:
		return os.MkdirAll(dst, 0o755)
	case tar.TypeReg:
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
		if err != nil {
			return err
		}
		// archive/tar yields exactly h.Size bytes, which extractTarLimited has checked.
		if _, err := io.Copy(f, io.LimitReader(tr, h.Size)); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case tar.TypeLink:
		target, err := kernelPath(h.Linkname)
		if err != nil || target == "" {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.Link(filepath.Join(dir, filepath.FromSlash(target)), dst)
	}
	return nil
}
