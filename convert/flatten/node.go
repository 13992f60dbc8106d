package flatten

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"
)

// maxHops bounds symlink expansions during one path resolution, as Linux's MAXSYMLINKS does.
const maxHops = 40

// impliedTime is the mtime of directories a layer implies but never declares.
var impliedTime = time.Unix(0, 0).UTC()

// inode is what several hardlinked paths share: attributes and spooled content. A path replaced or
// whited out later gets a new inode (or none), so links made earlier keep the old content.
type inode struct {
	typ                byte
	mode               int64
	uid, gid           int
	size, off          int64 // content length and offset in the spool (TypeReg)
	mtime              time.Time
	linkname           string   // symlink target
	linkComps          []string // split(linkname), computed on first resolution through the link
	devmajor, devminor int64
	xattrs             map[string]string
}

// node is one name in the tree under construction.
type node struct {
	ino   *inode
	layer int              // index of the last layer that wrote this node or something below it
	kids  map[string]*node // children; non-nil only for directories
}

func newNode(ino *inode, layer int) *node {
	n := &node{ino: ino, layer: layer}
	if ino.typ == tar.TypeDir {
		n.kids = map[string]*node{}
	}
	return n
}

func impliedDir(layer int) *node {
	return newNode(&inode{typ: tar.TypeDir, mode: 0o755, mtime: impliedTime}, layer)
}

func (n *node) isDir() bool { return n.ino.typ == tar.TypeDir }

// errLoop and errNotDir are returned by resolve; both wrap the matching errno.
var (
	errLoop   = fmt.Errorf("too many levels of symbolic links: %w", syscall.ELOOP)
	errNotDir = fmt.Errorf("path component is not a directory: %w", syscall.ENOTDIR)
)

// walk says how resolve walks a path.
type walk struct {
	followLast bool // follow a symlink in the last component too
	create     bool // make missing directories (implied ones of layer) and mark the path written
	layer      int
}

// resolve walks the clean relative path p from root as a chroot would: symlinks in every component
// but the last are followed (absolute targets restart at root, ".." stops at root), and the last is
// followed only when w.followLast is set. With w.create, missing intermediate directories are made
// (as implied directories of w.layer) and every directory on the final path is marked as written by
// w.layer.
// It returns the directory holding the last component, that component's name and its node (nil when
// absent). When the last component resolves to a directory through "." or "..", parent is nil.
//
// Each symlink target is split once (cached on its inode) and pushed as a slice onto a stack of
// pending components rather than copied in front of them, and runs of ".." are applied at once,
// so one resolution costs O(len(p) + maxHops*maxLinkLen) at worst, as in the kernel.
func resolve(root *node, p string, w walk) (parent *node, name string, n *node, err error) {
	stack := []*node{root}
	// pending holds the components still to walk, innermost symlink target last; none is empty.
	pending := [][]string{split(p)}
	if len(pending[0]) == 0 {
		pending = nil
	}
	hops := 0
	for len(pending) > 0 {
		top := &pending[len(pending)-1]
		c := (*top)[0]
		*top = (*top)[1:]
		if c == ".." {
			up := 1
			for len(*top) > 0 && (*top)[0] == ".." {
				*top = (*top)[1:]
				up++
			}
			stack = stack[:max(1, len(stack)-up)]
		}
		for len(pending) > 0 && len(pending[len(pending)-1]) == 0 {
			pending = pending[:len(pending)-1]
		}
		if c == ".." {
			continue
		}
		last := len(pending) == 0
		cur := stack[len(stack)-1]
		child := cur.kids[c]
		if last && (!w.followLast || child == nil) {
			mark(stack, w)
			return cur, c, child, nil
		}
		switch {
		case child == nil:
			if !w.create {
				return nil, "", nil, fs.ErrNotExist
			}
			child = impliedDir(w.layer)
			cur.kids[c] = child
			stack = append(stack, child)
		case child.isDir():
			if last {
				mark(stack, w)
				return cur, c, child, nil
			}
			stack = append(stack, child)
		case child.ino.typ == tar.TypeSymlink:
			if hops++; hops > maxHops {
				return nil, "", nil, errLoop
			}
			ino := child.ino
			if ino.linkComps == nil && ino.linkname != "" {
				ino.linkComps = split(ino.linkname)
			}
			if strings.HasPrefix(ino.linkname, "/") {
				stack = stack[:1]
			}
			if len(ino.linkComps) > 0 {
				pending = append(pending, ino.linkComps)
			}
		default:
			if last {
				mark(stack, w)
				return cur, c, child, nil
			}
			return nil, "", nil, errNotDir
		}
	}
	mark(stack, w)
	return nil, "", stack[len(stack)-1], nil
}

func mark(stack []*node, w walk) {
	if !w.create {
		return
	}
	for _, d := range stack {
		d.layer = w.layer
	}
}

// split returns the non-empty, non-"." components of p.
func split(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// hideLower removes everything below d that lower layers (index < layer) wrote, keeping what layer
// itself wrote: the effect of an opaque directory, or of a whiteout of a directory the same layer
// also declares.
func hideLower(d *node, layer int) {
	for name, k := range d.kids {
		if k.layer < layer {
			delete(d.kids, name)
		} else if k.isDir() {
			hideLower(k, layer)
		}
	}
}

var errEscape = errors.New("path escapes the image root")

// cleanName turns a tar entry name into a clean path relative to the root ("" for the root). An
// absolute name is taken relative to the root ("/../x" is "x", as containerd's extraction does); a
// relative name that climbs out ("../x", "a/../../x") is an error.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("NUL byte in name")
	}
	if strings.HasPrefix(name, "/") {
		return strings.TrimPrefix(path.Clean(name), "/"), nil
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", errEscape
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}
