package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/cachedir"
)

// cacheParts are the registry cache's directories (kernels stay: make kernel fetched them).
var cacheParts = []struct {
	dir  func(cachedir.Dir) string
	what string
}{
	{cachedir.Dir.Blobs, "registry blobs (content-addressed)"},
	{cachedir.Dir.PulledBundles, "bundles pulled by c2vm run REF"},
	{cachedir.Dir.Refs, "references last resolved (for an unreachable registry)"},
	{cachedir.Dir.Ingest, "partial downloads"},
	{cachedir.Dir.Snapshots, "saved VMs for warm starts (c2vm snapshot, run --snapshot)"},
}

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "show or empty the registry cache",
		Subcommands: []*cli.Command{
			{Name: "ls", Usage: "list what the cache holds, with sizes", Action: runCacheLs},
			{Name: "prune", Usage: "remove the registry blobs, pulled bundles, references and saved VMs (not the kernels)", Action: runCachePrune},
		},
	}
}

func runCacheLs(c *cli.Context) error {
	rc, err := registryClient(c)
	if err != nil {
		return err
	}
	var total int64
	for _, p := range cacheParts {
		dir := p.dir(cachedir.Dir(rc.CacheDir()))
		n, size, err := du(dir)
		if err != nil {
			return fmt.Errorf("cache ls: %w", err)
		}
		total += size
		fmt.Fprintf(c.App.Writer, "%-8s %5d files %9s  %s\n", filepath.Base(dir), n, units.HumanSize(float64(size)), p.what)
	}
	fmt.Fprintf(c.App.Writer, "%-8s %15s  in %s\n", "total", units.HumanSize(float64(total)), rc.CacheDir())
	return nil
}

func runCachePrune(c *cli.Context) error {
	rc, err := registryClient(c)
	if err != nil {
		return err
	}
	var freed int64
	for _, p := range cacheParts {
		dir := p.dir(cachedir.Dir(rc.CacheDir()))
		_, size, _ := du(dir)
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("cache prune: %w", err)
		}
		freed += size
	}
	fmt.Fprintf(c.App.Writer, "freed %s\n", units.HumanSize(float64(freed)))
	return nil
}

// du counts the regular files below dir and their sizes (0 for a missing dir).
func du(dir string) (n int, size int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return filepath.SkipAll
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n, size = n+1, size+fi.Size()
		}
		return err
	})
	return n, size, err
}
