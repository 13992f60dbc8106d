//go:build !c2vm_embed

package assets

// Embedded reports whether this binary carries the assets.
const Embedded = false

func embedded(string) (Assets, bool) { return Assets{}, false }

// EmbeddedArches lists the guest architectures this binary carries assets for: none.
func EmbeddedArches() []string { return nil }
