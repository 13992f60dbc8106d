package kernel

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// openTar returns a tar reader over an ar member named like "data.tar.xz", decompressing by its
// suffix, and a function that releases the decompressor.
func openTar(m arMember) (*tar.Reader, func(), error) {
	br := bufio.NewReaderSize(m.Data, 1<<20)
	ext := strings.TrimPrefix(path.Ext(m.Name), ".")
	if strings.HasSuffix(m.Name, ".tar") {
		ext = ""
	}
	var r io.Reader
	closeFn := func() {}
	switch ext {
	case "":
		r = br
	case "xz":
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		r = xr
	case "zst":
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		r, closeFn = zr, zr.Close
	case "gz":
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		r, closeFn = gr, func() { gr.Close() }
	case "bz2":
		r = bzip2.NewReader(br)
	default:
		return nil, nil, fmt.Errorf("%s: unsupported compression %q", m.Name, ext)
	}
	return tar.NewReader(r), closeFn, nil
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

// extractTar unpacks the kernel image and module tree from tr into dir. Symbolic links (e.g.
// lib/modules/<v>/build) are skipped; hard links are recreated inside dir.
func extractTar(tr *tar.Reader, dir string) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read data.tar: %w", err)
		}
		rel, err := kernelPath(h.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		if err := extractEntry(tr, h, dir, rel); err != nil {
			return fmt.Errorf("unpack %s: %w", h.Name, err)
		}
	}
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
		if _, err := io.Copy(f, tr); err != nil {
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
