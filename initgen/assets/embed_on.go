//go:build c2vm_embed

package assets

import (
	_ "embed"

	"github.com/c2vm/c2vm/initgen"
)

// The build copies the host-architecture binaries here before `go build -tags c2vm_embed`.
var (
	//go:embed files/c2vm-init
	embeddedInit []byte
	//go:embed files/runc
	embeddedRunc []byte
)

// Embedded reports whether this binary carries the assets.
const Embedded = true

func embedded() (Assets, bool) {
	return Assets{Init: initgen.Blob{Data: embeddedInit}, Runc: initgen.Blob{Data: embeddedRunc}, Where: "embedded"}, true
}
