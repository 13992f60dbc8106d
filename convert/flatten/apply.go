package flatten

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	defaultMaxSize = 64 << 30
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueName     = ".wh..wh..opq"
	xattrPrefix    = "SCHILY.xattr."
	modeTypeMask   = 0o170000
	modeSocket     = 0o140000

	// Limits on an entry's metadata, which stays in memory (Linux's limits, and erofs's: go-erofs
	// silently truncates xattr names over 255 bytes and values over 65535 bytes, so longer ones
	// are rejected rather than written into a corrupt image).
	maxNameLen       = 4096  // PATH_MAX
	maxLinkLen       = 4095  // symlink and hardlink targets: PATH_MAX less the NUL
	maxXattrNameLen  = 255   // XATTR_NAME_MAX
	maxXattrValueLen = 65535 // XATTR_SIZE_MAX is 65536; erofs stores at most 65535
	// entryOverhead is what each entry is charged against MaxSize besides its names and
	// xattrs: roughly the in-memory cost of its node, inode and header.
	entryOverhead = 512
	// minMetaBudget is the least metadata budget, so a tiny MaxSize still allows a few thousand
	// entries.
	minMetaBudget = 1 << 20
)

// builder applies layers into a tree of nodes.
type builder struct {
	root  *node
	spool *spool
	total int64 // content bytes spooled so far
	meta  int64 // metadata bytes charged so far (entries, names, link targets, xattrs)
	opts  Options
}

// applyLayer reads one layer stream to its end (past the tar end marker, so the caller's digest
// check runs) and applies its entries.
func (b *builder) applyLayer(ctx context.Context, li int, l Layer) (err error) {
	if l.Open == nil {
		return fmt.Errorf("flatten layer %s: no Open function", l.Digest)
	}
	rc, err := l.Open(ctx)
	if err != nil {
		return layerErr(l, err)
	}
	defer func() {
		if cerr := rc.Close(); cerr != nil && err == nil {
			err = layerErr(l, cerr)
		}
	}()
	tr := tar.NewReader(rc)
	last := ""
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flatten layer %s: %w", l.Digest, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if last == "" {
				return layerErr(l, fmt.Errorf("reading tar: %w", err))
			}
			return layerErr(l, fmt.Errorf("reading tar after %s: %w", show(last), err))
		}
		last = hdr.Name
		if err := b.charge(hdr); err != nil {
			return fmt.Errorf("flatten layer %s: %s: %w", l.Digest, show(hdr.Name), err)
		}
		if err := b.apply(li, hdr, tr); err != nil {
			return fmt.Errorf("flatten layer %s: %s: %w", l.Digest, show(hdr.Name), err)
		}
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return layerErr(l, err)
	}
	return nil
}

// layerErr wraps an error of the layer's stream with the layer's digest, unless the stream's own
// error names it already (convert/image's verifying reader does), so the line says it once.
func layerErr(l Layer, err error) error {
	if l.Digest != "" && strings.Contains(err.Error(), l.Digest) {
		return fmt.Errorf("flatten: %w", err)
	}
	return fmt.Errorf("flatten layer %s: %w", l.Digest, err)
}

// show prints a name as is when it is printable UTF-8, quoted otherwise.
func show(s string) string {
	if s == "" || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return strconv.Quote(s)
	}
	return s
}

func (b *builder) warn(format string, args ...any) {
	if b.opts.Warn != nil {
		b.opts.Warn(fmt.Sprintf(format, args...))
	}
}

// charge checks the size limits on an entry's metadata and charges it against MaxSize. Metadata
// is held in memory until the tree is written, so it has a budget of its own, MaxSize (at least
// 1 MiB), separate from the content budget (content is spooled to disk, and a MaxSize exactly
// filled by content stays valid): memory and disk are each bounded by MaxSize, and the number of
// entries by MaxSize/512. Entries that are skipped or only whiteouts are charged too.
func (b *builder) charge(hdr *tar.Header) error {
	if len(hdr.Name) > maxNameLen {
		return fmt.Errorf("name is %d bytes, over the %d-byte limit", len(hdr.Name), maxNameLen)
	}
	if len(hdr.Linkname) > maxLinkLen {
		return fmt.Errorf("link target is %d bytes, over the %d-byte limit", len(hdr.Linkname), maxLinkLen)
	}
	cost := int64(entryOverhead + len(hdr.Name) + len(hdr.Linkname))
	for k, v := range hdr.PAXRecords {
		x, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok || x == "" {
			continue
		}
		if len(x) > maxXattrNameLen {
			return fmt.Errorf("xattr name %s is %d bytes, over the %d-byte limit", show(x[:32]+"…"), len(x), maxXattrNameLen)
		}
		if len(v) > maxXattrValueLen {
			return fmt.Errorf("xattr %s value is %d bytes, over the %d-byte limit", show(x), len(v), maxXattrValueLen)
		}
		cost += int64(len(x) + len(v))
	}
	if cost > max(b.opts.MaxSize, minMetaBudget)-b.meta {
		return fmt.Errorf("metadata of the uncompressed rootfs (entries, names, xattrs) exceeds --max-size %d", b.opts.MaxSize)
	}
	b.meta += cost
	return nil
}

// apply applies one tar entry of layer li.
func (b *builder) apply(li int, hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	typ := hdr.Typeflag
	switch typ {
	case tar.TypeCont, tar.TypeGNUSparse: // archive/tar already expanded sparse files (and reads TypeRegA as TypeReg)
		typ = tar.TypeReg
	case tar.TypeXGlobalHeader:
		return nil // its records were already merged by archive/tar where they matter
	}
	if hdr.Mode&modeTypeMask == modeSocket {
		b.warn("flatten: %s: skipping socket", show(hdr.Name))
		return nil
	}
	switch typ {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		b.warn("flatten: %s: skipping entry of unsupported type %q", show(hdr.Name), typ)
		return nil
	}
	if name == "" {
		return b.applyRoot(hdr, typ)
	}
	if strings.HasPrefix(name, whiteoutMeta) && name != opaqueName {
		b.warn("flatten: %s: skipping whiteout metadata entry", show(hdr.Name))
		return nil // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs), skipped as containerd does
	}
	dir, base := path.Split(name)
	for _, c := range split(dir) {
		if strings.HasPrefix(c, whiteoutPrefix) {
			return fmt.Errorf("whiteout name %q used as a directory", c)
		}
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return b.whiteout(li, dir, base)
	}
	var n *node
	if typ == tar.TypeLink {
		if n, err = b.hardlink(li, hdr.Linkname); err != nil {
			return err
		}
	} else {
		ino, err := b.inode(hdr, typ, r)
		if err != nil {
			return err
		}
		n = newNode(ino, li)
	}
	return b.place(li, name, n)
}

// applyRoot handles an entry naming the root itself ("", ".", "/", "./"): a directory sets the
// root's attributes; anything else cannot replace the root.
func (b *builder) applyRoot(hdr *tar.Header, typ byte) error {
	if typ != tar.TypeDir {
		return fmt.Errorf("entry of type %q names the image root", typ)
	}
	ino, err := b.inode(hdr, typ, nil)
	if err != nil {
		return err
	}
	b.root.ino = ino
	return nil
}

// inode builds the attributes of a non-hardlink entry and spools a regular file's content.
func (b *builder) inode(hdr *tar.Header, typ byte, r io.Reader) (*inode, error) {
	ino := &inode{
		typ:   typ,
		mode:  hdr.Mode & 0o7777,
		uid:   hdr.Uid,
		gid:   hdr.Gid,
		mtime: hdr.ModTime,
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, xattrPrefix); ok && x != "" {
			if ino.xattrs == nil {
				ino.xattrs = map[string]string{}
			}
			ino.xattrs[x] = v
		}
	}
	switch typ {
	case tar.TypeSymlink:
		if strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return nil, errors.New("NUL byte in symlink target")
		}
		ino.linkname = hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		ino.devmajor, ino.devminor = hdr.Devmajor, hdr.Devminor
	case tar.TypeReg:
		if err := b.content(ino, hdr.Size, r); err != nil {
			return nil, err
		}
	}
	return ino, nil
}

func (b *builder) content(ino *inode, size int64, r io.Reader) error {
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if size > b.opts.MaxSize-b.total {
		return fmt.Errorf("uncompressed rootfs exceeds --max-size %d", b.opts.MaxSize)
	}
	if size == 0 {
		return nil
	}
	off, err := b.spool.add(r, size)
	if err != nil {
		return fmt.Errorf("reading content: %w", err)
	}
	b.total += size
	ino.off, ino.size = off, size
	return nil
}

// hardlink returns a new node sharing the inode that target names at this moment. The target is
// resolved inside the root; its last component is not followed (link(2) semantics), so a link to a
// symlink shares the symlink.
func (b *builder) hardlink(li int, target string) (*node, error) {
	t, err := cleanName(target)
	if err != nil {
		return nil, fmt.Errorf("hardlink target %s: %w", show(target), err)
	}
	if t == "" {
		return nil, fmt.Errorf("hardlink target %s is the image root", show(target))
	}
	_, _, tn, err := resolve(b.root, t, walk{layer: li})
	if err == nil && tn == nil {
		err = errors.New("no such file (a hardlink must follow its target)")
	}
	if err != nil {
		return nil, fmt.Errorf("hardlink target %s: %w", show(target), err)
	}
	if tn.isDir() {
		return nil, fmt.Errorf("hardlink target %s is a directory", show(target))
	}
	return &node{ino: tn.ino, layer: li}, nil
}

// place puts n at name, resolving parent directories inside the root. A directory over a
// directory merges (new attributes, children kept); anything else replaces what was there.
func (b *builder) place(li int, name string, n *node) error {
	parent, base, old, err := resolve(b.root, name, walk{create: true, layer: li})
	if err != nil {
		return err
	}
	if parent == nil {
		return errors.New("path resolves to a directory through \"..\"")
	}
	if old != nil && old.isDir() && n.isDir() {
		old.ino = n.ino
		old.layer = li
		return nil
	}
	parent.kids[base] = n
	return nil
}

// whiteout applies ".wh.NAME" or ".wh..wh..opq" in directory dir. Whiteouts hide what lower layers
// wrote; what this layer wrote survives, whichever order the entries come in.
func (b *builder) whiteout(li int, dir, base string) error {
	if base == opaqueName {
		_, _, d, err := resolve(b.root, dir, walk{followLast: true, layer: li})
		if err != nil || d == nil || !d.isDir() {
			return nil // nothing below to hide
		}
		hideLower(d, li)
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		b.warn("flatten: %s: skipping whiteout metadata entry", show(dir+base))
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("invalid whiteout %s", show(base))
	}
	_, _, d, err := resolve(b.root, dir, walk{followLast: true, layer: li})
	if err != nil || d == nil || !d.isDir() {
		return nil // whiteout of a path that does not exist
	}
	n := d.kids[target]
	switch {
	case n == nil:
	case n.layer < li:
		delete(d.kids, target)
	case n.isDir():
		hideLower(n, li)
	}
	return nil
}
