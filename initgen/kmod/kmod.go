// Package kmod reads Linux kernel module metadata: the dependencies recorded in each module's
// .modinfo ELF section, an index of the modules below a lib/modules/<version> directory, the
// dependency closure of a set of modules, and a modules.dep file for them. It needs no depmod and
// no running kernel, so the converter can build an initrd's module set from a kernel package alone.
//
// See docs/platforms-and-kernels.md.
package kmod

import (
	"strings"
)

// Module is one kernel module in a closure.
type Module struct {
	// Name is the normalised module name ('-' replaced by '_'), e.g. "virtio_net".
	Name string
	// Path is relative to the modules dir, e.g. "kernel/drivers/net/virtio_net.ko".
	Path string
	// Depends are the normalised names of the modules this one needs loaded first.
	Depends []string
}

// NormName normalises a module name the way the kernel does: '-' and '_' are the same.
func NormName(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// moduleSuffixes are the file name endings of (possibly compressed) modules.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// nameFromPath returns the normalised module name of a module file path, or "" when the path is
// not a module.
func nameFromPath(p string) string {
	base := p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		base = p[i+1:]
	}
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(base, s) && len(base) > len(s) {
			return NormName(strings.TrimSuffix(base, s))
		}
	}
	return ""
}
