//go:build c2vm_embed

package assets

import (
	"embed"
	"io/fs"
	"path"
	"sort"

	"github.com/c2vm/c2vm/initgen"
)

// The build copies each guest architecture's binaries to files/<arch>/ before
// `go build -tags c2vm_embed`; the host's are always there.
//
//go:embed files/*/c2vm-init files/*/runc
var files embed.FS

// Embedded reports whether this binary carries the assets.
const Embedded = true

func embedded(arch string) (Assets, bool) {
	initData, err1 := files.ReadFile(path.Join("files", arch, InitName))
	runcData, err2 := files.ReadFile(path.Join("files", arch, RuncName))
	if err1 != nil || err2 != nil {
		return Assets{}, false
	}
	return Assets{Init: initgen.Blob{Data: initData}, Runc: initgen.Blob{Data: runcData}, Where: "embedded"}, true
}

// EmbeddedArches lists the guest architectures this binary carries assets for.
func EmbeddedArches() []string {
	ents, _ := fs.ReadDir(files, "files")
	var out []string
	for _, e := range ents {
		if _, ok := embedded(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
