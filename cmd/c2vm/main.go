// Command c2vm turns container images into bootable VM bundles and runs them.
//
// See docs/usage.md (every command and flag) and docs/architecture.md.
package main

import "os"

func main() { os.Exit(Main(os.Args, os.Stdin, os.Stdout, os.Stderr)) }
