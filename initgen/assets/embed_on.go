//go:build c2vm_embed

package assets

import (
	"embed"
	"io/fs"
	"path"
	"sort"

	"github.com/c2vm/c2vm/initgen"
)

// The build copies each guest architecture's guest archive to files/<arch>/ before
// `go build -tags c2vm_embed`; the host's is always there.
//
//go:embed files/*/guest.cpio.zst
var files embed.FS

// Embedded reports whether this binary carries the assets.
const Embedded = true

func embedded(arch string) (Assets, bool) {
	guest, err := files.ReadFile(path.Join("files", arch, GuestName))
	if err != nil {
		return Assets{}, false
	}
	return Assets{Guest: initgen.Blob{Data: guest}, Where: "embedded"}, true
}

// EmbeddedArches lists the guest architectures this binary carries assets for.
func EmbeddedArches() []string {
	ents, _ := fs.ReadDir(files, "files")
	var out []string
	for _, e := range ents {
		if _, err := fs.Stat(files, path.Join("files", e.Name(), GuestName)); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
