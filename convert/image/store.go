package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// store reads the members of a layout directory or an indexed tar archive by slash-separated
// relative name. Implementations are safe for concurrent use.
type store interface {
	// open returns the member's content and size, or an error wrapping fs.ErrNotExist.
	open(name string) (io.ReadCloser, int64, error)
	has(name string) bool
	// where names the store in errors ("directory X", "archive Y").
	where() string
	Close() error
}

// cleanMember validates a member name taken from image metadata: relative, no "..", no empty or
// "." components after cleaning, so it cannot leave the layout or archive.
func cleanMember(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "" || strings.HasPrefix(n, "/") || strings.ContainsRune(n, 0) || strings.Contains(n, "\\") {
		return "", fmt.Errorf("path %q is not a relative path inside the image", name)
	}
	n = path.Clean(n)
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("path %q escapes the image", name)
	}
	if !fs.ValidPath(n) || n == "." {
		return "", fmt.Errorf("path %q is not a relative path inside the image", name)
	}
	return n, nil
}

// dirStore serves an OCI layout directory through os.Root, so no member name or symlink in the
// layout can reach outside it.
type dirStore struct {
	dir  string
	root *os.Root
}

func openDirStore(dir string) (*dirStore, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open image directory: %w", err)
	}
	return &dirStore{dir: dir, root: root}, nil
}

func (d *dirStore) open(name string) (io.ReadCloser, int64, error) {
	n, err := cleanMember(name)
	if err != nil {
		return nil, 0, err
	}
	f, err := d.root.Open(n)
	if isNotExist(err) {
		return nil, 0, notFound(d, n)
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file", n)
	}
	return f, st.Size(), nil
}

func (d *dirStore) has(name string) bool {
	n, err := cleanMember(name)
	if err != nil {
		return false
	}
	st, err := d.root.Stat(n)
	return err == nil && st.Mode().IsRegular()
}

func (d *dirStore) where() string { return "directory " + d.dir }

func (d *dirStore) Close() error { return d.root.Close() }

// notFound reports a missing member with the place it was looked for.
func notFound(s store, name string) error {
	return fmt.Errorf("%s not found in %s: %w", name, s.where(), fs.ErrNotExist)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
