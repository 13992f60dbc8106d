package flatten

import (
	"archive/tar"
	"maps"
	"sort"
)

// canonical lists the tree below root sorted by path; of the paths sharing an inode, the first in
// that order carries the content and the others become TypeLink entries naming it.
func canonical(root *node) []*Entry {
	var list []*Entry
	var walk func(d *node, prefix string)
	walk = func(d *node, prefix string) {
		for name, k := range d.kids {
			p := prefix + name
			list = append(list, entryOf(p, k.ino))
			if k.isDir() {
				walk(k, p+"/")
			}
		}
	}
	walk(root, "")
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	first := map[*inode]string{}
	for _, e := range list {
		if e.Type == tar.TypeDir {
			continue
		}
		if target, ok := first[e.ino]; ok {
			e.Type, e.Linkname, e.Size = tar.TypeLink, target, 0
			continue
		}
		first[e.ino] = e.Path
	}
	return list
}

func entryOf(p string, ino *inode) *Entry {
	e := &Entry{
		Path:     p,
		Type:     ino.typ,
		Mode:     ino.mode,
		UID:      ino.uid,
		GID:      ino.gid,
		ModTime:  ino.mtime,
		Linkname: ino.linkname,
		Devmajor: ino.devmajor,
		Devminor: ino.devminor,
		Xattrs:   maps.Clone(ino.xattrs),
		ino:      ino,
	}
	if ino.typ == tar.TypeReg {
		e.Size = ino.size
	}
	return e
}
