//go:build !c2vm_embed

package assets

// Embedded reports whether this binary carries the assets.
const Embedded = false

func embedded() (Assets, bool) { return Assets{}, false }
