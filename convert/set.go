package convert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/platforms"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/convert/image"
	"github.com/c2vm/c2vm/internal/fileutil"
	"github.com/c2vm/c2vm/internal/registry"
)

// ConvertSet converts the image for each of plats ("all" alone: every platform the image offers)
// into a bundle set at opts.Output: one bundle per platform in Output/<os>-<arch>[-<variant>]/,
// listed in Output/index.json. Like Convert it is atomic: the set appears whole or not at all,
// and replaces only an empty directory or another set.
func ConvertSet(ctx context.Context, opts Options, plats []string) (*bundle.Set, error) {
	if len(plats) == 1 && plats[0] == "all" {
		ps, err := image.Platforms(ctx, opts.Image, image.Options{Registry: registry.Options{Insecure: opts.Insecure, CacheDir: opts.CacheDir, Warn: opts.Warn}})
		if err != nil {
			return nil, err
		}
		plats = nil
		for _, p := range ps {
			plats = append(plats, platforms.Format(p))
		}
	}
	target := filepath.Clean(opts.Output)
	if err := replaceableSet(target); err != nil {
		return nil, err
	}
	set := &bundle.Set{SchemaVersion: bundle.SchemaVersion}
	err := fileutil.AtomicDir(target, fileutil.AtomicDirOptions{}, func(stage string) error {
		for _, p := range plats {
			pp, err := platforms.Parse(p)
			if err != nil {
				return fmt.Errorf("platform %q: %w", p, err)
			}
			o := opts
			o.Platform, o.Output = platforms.Format(pp), filepath.Join(stage, bundle.SetDir(platforms.Normalize(pp)))
			m, err := Convert(ctx, o)
			if err != nil {
				return fmt.Errorf("platform %s: %w", o.Platform, err)
			}
			set.Bundles = append(set.Bundles, bundle.SetEntry{Platform: m.Platform, Path: filepath.Base(o.Output)})
		}
		b, err := json.MarshalIndent(set, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(stage, bundle.SetFile), append(b, '\n'), 0o644)
	})
	if err != nil {
		return nil, err
	}
	return set, nil
}

// replaceableSet accepts a missing or empty target, or an earlier bundle set.
func replaceableSet(target string) error {
	ents, err := os.ReadDir(target)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if _, ok, _ := bundle.ReadSet(target); ok {
		return nil
	}
	return fmt.Errorf("output %s exists and is not a bundle set: remove it or choose another -o", target)
}
