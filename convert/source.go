package convert

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/convert/flatten"
	"github.com/c2vm/c2vm/convert/image"
	"github.com/c2vm/c2vm/internal/fileutil"
	"github.com/c2vm/c2vm/internal/registry"
)

// TransportRootfs names a plain root filesystem: rootfs:DIR (e.g. a stage bind-mounted in
// `docker build`) or rootfs:FILE.tar (e.g. `docker build --output type=tar`, gzip or zstd too).
// Its image config comes from --config and --change, as `docker import` takes it.
const TransportRootfs = "rootfs"

// source is what a conversion reads: an image's platform, config and layers, or a root
// filesystem as one layer.
type source struct {
	Platform       ocispec.Platform
	Config         ocispec.Image
	Name           string
	ManifestDigest digest.Digest
	ConfigDigest   digest.Digest
	Layers         []flatten.Layer
	Close          func() error
}

func (c *conversion) openSource(ctx context.Context) (*source, error) {
	if p, ok := strings.CutPrefix(c.opts.Image, TransportRootfs+":"); ok {
		return c.openRootfs(p)
	}
	var img *image.Image
	img, err := image.Open(ctx, c.opts.Image, image.Options{Platform: c.opts.Platform, Progress: c.progress(&img),
		Registry: registry.Options{Insecure: c.opts.Insecure, CacheDir: c.opts.CacheDir, Warn: c.opts.Warn}})
	if err != nil {
		return nil, err
	}
	return &source{Platform: img.Platform, Config: img.Config, Name: img.Name, ManifestDigest: img.ManifestDigest,
		ConfigDigest: img.ConfigDigest, Layers: flattenLayers(img), Close: img.Close}, nil
}

// openRootfs opens a directory or a tar of a root filesystem, with the config of --config (an
// OCI image config JSON) or an empty one, for --platform or the host's.
func (c *conversion) openRootfs(p string) (*source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("image %s:%s: %w", TransportRootfs, p, err)
	}
	plat := platforms.Normalize(platforms.DefaultSpec())
	if c.opts.Platform != "" {
		if plat, err = platforms.Parse(c.opts.Platform); err != nil {
			return nil, fmt.Errorf("platform %q: %w", c.opts.Platform, err)
		}
	}
	cfg := ocispec.Image{}
	if c.opts.ConfigFile != "" {
		b, err := os.ReadFile(c.opts.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("--config %s: not an OCI image config: %w", c.opts.ConfigFile, err)
		}
	}
	cfg.OS, cfg.Architecture, cfg.Variant = plat.OS, plat.Architecture, plat.Variant
	open := func(context.Context) (io.ReadCloser, error) { return openTarFile(p) }
	if fi.IsDir() {
		open = func(ctx context.Context) (io.ReadCloser, error) { return dirTar(ctx, p), nil }
	}
	return &source{Platform: plat, Config: cfg, Name: filepath.Base(p),
		Layers: []flatten.Layer{{Digest: TransportRootfs + ":" + p, Open: open}}, Close: func() error { return nil }}, nil
}

// openTarFile opens a tar, decompressing gzip and zstd (containerd's DecompressStream detects which).
func openTarFile(p string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	r, err := compression.DecompressStream(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, closers{r, f}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// dirTar streams a directory tree as a tar layer, keeping what is on disk: owners, modes
// (setuid/setgid/sticky), times, xattrs (file capabilities), symlinks, hardlinks, devices and
// fifos. Symlinks are never followed. The root's own attributes travel as "./".
func dirTar(ctx context.Context, root string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		links := map[[2]uint64]string{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			return writeDirEntry(tw, p, filepath.ToSlash(rel), links)
		})
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func writeDirEntry(tw *tar.Writer, p, rel string, links map[[2]uint64]string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	target := ""
	if fi.Mode()&os.ModeSymlink != 0 {
		if target, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	h.Name, h.Uname, h.Gname = rel, "", ""
	if rel == "." {
		h.Name = "./"
	} else if fi.IsDir() {
		h.Name += "/"
	}
	h.Format = tar.FormatPAX
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
		if h.Typeflag == tar.TypeReg && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, seen := links[key]; seen {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[key] = rel
			}
		}
	}
	if x := xattrs(p); len(x) > 0 {
		h.PAXRecords = x
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if h.Typeflag != tar.TypeReg || h.Size == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(tw, f, h.Size); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// xattrs returns a file's extended attributes as PAX records (none when they cannot be read).
func xattrs(p string) map[string]string {
	xs, err := fileutil.Lxattrs(p)
	if err != nil || len(xs) == 0 {
		return nil
	}
	out := make(map[string]string, len(xs))
	for name, val := range xs {
		out["SCHILY.xattr."+name] = val
	}
	return out
}
