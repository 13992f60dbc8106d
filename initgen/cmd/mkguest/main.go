// Command mkguest writes a guest architecture's guest archive (initgen.WriteGuest: /init,
// /sbin/runc, /dev/null) uncompressed to stdout, for the build to compress once:
//
//	go run ./initgen/cmd/mkguest bin/amd64 | zstd -19 --zstd=wlog=23 > bin/amd64/guest.cpio.zst
//
// See docs/platforms-and-kernels.md (the guest archive).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/c2vm/c2vm/initgen"
	"github.com/c2vm/c2vm/initgen/assets"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkguest DIR (holding c2vm-init and runc) > guest.cpio")
		os.Exit(2)
	}
	dir := os.Args[1]
	init := initgen.Blob{Source: filepath.Join(dir, assets.InitName)}
	runc := initgen.Blob{Source: filepath.Join(dir, assets.RuncName)}
	if err := initgen.WriteGuest(context.Background(), os.Stdout, init, runc); err != nil {
		fmt.Fprintln(os.Stderr, "mkguest:", err)
		os.Exit(1)
	}
}
