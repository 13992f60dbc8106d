package initgen

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// File types for File.Mode, as in the cpio/stat mode word. A Mode without type bits is a regular
// file.
const (
	ModeDir     = 0o040000
	ModeSymlink = 0o120000
	ModeCharDev = 0o020000
	modeReg     = 0o100000
	modeType    = 0o170000
)

// File is one entry of the archive. Path is absolute in the guest ("/sbin/runc"). Mode holds the
// permission bits (setuid/setgid/sticky included), optionally with ModeDir or ModeSymlink; a
// regular file with Mode 0 gets 0644. A regular file's content is Data, or the host file Source,
// streamed when the archive is written; a symlink's target is Data; a character device (ModeCharDev)
// has Major and Minor.
type File struct {
	Path         string
	Mode         uint32
	Data         []byte
	Source       string
	Major, Minor uint32
}

func (f File) isDir() bool     { return f.Mode&modeType == ModeDir }
func (f File) isSymlink() bool { return f.Mode&modeType == ModeSymlink }
func (f File) isCharDev() bool { return f.Mode&modeType == ModeCharDev }

// cpioName turns a guest path into the archive's name for it ("sbin/runc"), rejecting paths that
// are not absolute, not clean or name the root.
func cpioName(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("initrd path %q: want a clean absolute path below /", p)
	}
	return p[1:], nil
}

// plan validates files, adds missing parent directories (0755) and sorts the result so that every
// parent precedes its children.
func plan(files []File) ([]File, error) {
	byName := make(map[string]File, len(files))
	for _, f := range files {
		name, err := cpioName(f.Path)
		if err != nil {
			return nil, err
		}
		if err := checkFile(f); err != nil {
			return nil, err
		}
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("initrd path %s: given twice", f.Path)
		}
		byName[name] = f
	}
	for name := range byName {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if p, ok := byName[d]; ok {
				if !p.isDir() {
					return nil, fmt.Errorf("initrd path /%s: parent /%s is not a directory", name, d)
				}
				continue
			}
			byName[d] = File{Path: "/" + d, Mode: ModeDir | 0o755}
		}
	}
	out := make([]File, 0, len(byName))
	for _, f := range byName {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func checkFile(f File) error {
	switch f.Mode & modeType {
	case 0, modeReg:
		if f.Data != nil && f.Source != "" {
			return fmt.Errorf("initrd path %s: both Data and Source set", f.Path)
		}
	case ModeDir:
		if f.Data != nil || f.Source != "" {
			return fmt.Errorf("initrd path %s: a directory has no content", f.Path)
		}
	case ModeSymlink:
		if len(f.Data) == 0 || f.Source != "" {
			return fmt.Errorf("initrd path %s: a symlink needs its target in Data", f.Path)
		}
	case ModeCharDev:
		if f.Data != nil || f.Source != "" {
			return fmt.Errorf("initrd path %s: a device has no content", f.Path)
		}
	default:
		return fmt.Errorf("initrd path %s: unsupported file type %#o", f.Path, f.Mode&modeType)
	}
	return nil
}
