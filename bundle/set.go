package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SetFile is the index of a bundle set: a directory holding one bundle per platform, each in
// DIR/<os>-<arch>[-<variant>]/, listed in DIR/index.json.
const SetFile = "index.json"

// Set is a bundle set's index.json.
type Set struct {
	SchemaVersion int        `json:"schemaVersion"`
	Bundles       []SetEntry `json:"bundles"`
}

// SetEntry is one bundle of a set.
type SetEntry struct {
	Platform ocispec.Platform `json:"platform"`
	Path     string           `json:"path"` // relative to the set
}

// SetDir is the directory name of a platform's bundle in a set.
func SetDir(p ocispec.Platform) string {
	return strings.Trim(strings.ReplaceAll(platforms.Format(p), "/", "-"), "-")
}

// ReadSet reads dir/index.json; ok is false when dir is not a bundle set.
func ReadSet(dir string) (set *Set, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, SetFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	set = &Set{}
	if err := json.Unmarshal(b, set); err != nil || set.SchemaVersion != SchemaVersion {
		return nil, false, fmt.Errorf("bundle set %s: %s is not a c2vm bundle set index (version %d)", dir, SetFile, set.SchemaVersion)
	}
	for _, e := range set.Bundles {
		if e.Path != filepath.Base(e.Path) || e.Path == "." || e.Path == ".." {
			return nil, false, fmt.Errorf("bundle set %s: entry path %q is not a directory of the set", dir, e.Path)
		}
	}
	return set, true, nil
}

// Pick returns the directory of the set's bundle for platform ("" = the host's).
func (s *Set) Pick(dir, platform string) (string, error) {
	want := platforms.DefaultSpec()
	if platform != "" {
		var err error
		if want, err = platforms.Parse(platform); err != nil {
			return "", fmt.Errorf("--platform %q: %w", platform, err)
		}
	}
	m := platforms.Only(want)
	var avail []string
	for _, e := range s.Bundles {
		if m.Match(e.Platform) {
			return filepath.Join(dir, e.Path), nil
		}
		avail = append(avail, platforms.Format(e.Platform))
	}
	return "", fmt.Errorf("bundle set %s has no bundle for %s (it has %s): choose one with --platform", dir, platforms.Format(want), strings.Join(avail, ", "))
}

// Resolve returns dir itself for a bundle, or the set's bundle for platform.
func Resolve(dir, platform string) (string, error) {
	set, ok, err := ReadSet(dir)
	if err != nil || !ok {
		return dir, err
	}
	return set.Pick(dir, platform)
}
