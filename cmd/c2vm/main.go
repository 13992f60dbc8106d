// Command c2vm turns container images into bootable VM bundles and runs them.
package main

import "os"

func main() { os.Exit(Main(os.Args, os.Stdin, os.Stdout, os.Stderr)) }
