package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/c2vm/c2vm/internal/decompress"
)

// maxTarMembers bounds the index of an archive; real image archives have a few hundred members.
const maxTarMembers = 1 << 20

// maxLinkHops bounds the links followed to resolve one link member.
const maxLinkHops = 16

// member is one regular file of an indexed tar: its data's offset and size in the archive.
type member struct {
	off, size int64
}

// tarStore serves the regular files of an uncompressed tar archive from the open file, without
// copying them. Symlinks and hardlinks between members (old `docker save` links repeated layers)
// are resolved inside the archive at index time.
type tarStore struct {
	file    string
	f       *os.File
	members map[string]member
}

// countingReader counts the bytes read and seeked over, so the offset of each member's data is
// known right after tar.Reader.Next returns. It passes Seek through so tar skips member data
// without reading it.
type countingReader struct {
	f   *os.File
	pos int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.pos += int64(n)
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	pos, err := c.f.Seek(off, whence)
	if err == nil {
		c.pos = pos
	}
	return pos, err
}

func openTarStore(file string) (*tarStore, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open image archive: %w", err)
	}
	s := &tarStore{file: file, f: f}
	if err := s.index(); err != nil {
		f.Close()
		return nil, fmt.Errorf("read image archive %s: %w", file, err)
	}
	return s, nil
}

func (s *tarStore) index() error {
	st, err := s.f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	head := make([]byte, 8)
	n, _ := s.f.ReadAt(head, 0)
	if c := decompress.Detect(head[:n]); c != decompress.None {
		return fmt.Errorf("the archive is %s-compressed; decompress it first (e.g. `%s -d`) and pass the .tar", c, c)
	}
	s.members = map[string]member{}
	links := map[string]string{}
	cr := &countingReader{f: s.f}
	tr := tar.NewReader(cr)
	for count := 0; ; count++ {
		if count > maxTarMembers {
			return fmt.Errorf("more than %d members", maxTarMembers)
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not a valid tar archive: %w", err)
		}
		if err := s.add(h, cr.pos, st.Size(), links); err != nil {
			return err
		}
	}
	return s.resolveLinks(links)
}

func (s *tarStore) add(h *tar.Header, off, fileSize int64, links map[string]string) error {
	name, err := cleanMember(h.Name)
	if err != nil {
		// Members with odd names cannot be blobs we look up; skip them rather than fail.
		return nil
	}
	switch h.Typeflag {
	case tar.TypeReg: // archive/tar reads the old TypeRegA as TypeReg
		if off+h.Size > fileSize {
			return fmt.Errorf("member %s is truncated (archive ends before its %d bytes)", name, h.Size)
		}
		s.members[name] = member{off: off, size: h.Size}
		delete(links, name)
	case tar.TypeSymlink:
		links[name] = path.Join(path.Dir(name), h.Linkname)
		delete(s.members, name)
	case tar.TypeLink:
		links[name] = h.Linkname
		delete(s.members, name)
	}
	return nil
}

// resolveLinks turns symlinks and hardlinks between members into aliases of the regular member
// they lead to; links leaving the archive, looping or needing more than maxLinkHops hops are
// dropped (a lookup then fails clearly). Targets are looked up among the regular members only and
// the aliases merged afterwards, so the result does not depend on map iteration order.
func (s *tarStore) resolveLinks(links map[string]string) error {
	resolved := make(map[string]member, len(links))
	for name := range links {
		target, ok := name, false
		for hops := 0; hops < maxLinkHops; hops++ {
			next := links[target]
			n, err := cleanMember(next)
			if err != nil {
				break
			}
			if _, isLink := links[n]; !isLink {
				target, ok = n, true
				break
			}
			target = n
		}
		if !ok {
			continue // out of hops, a loop or a bad target
		}
		if m, isMember := s.members[target]; isMember {
			resolved[name] = m
		}
	}
	for name, m := range resolved {
		s.members[name] = m
	}
	return nil
}

func (s *tarStore) open(name string) (io.ReadCloser, int64, error) {
	n, err := cleanMember(name)
	if err != nil {
		return nil, 0, err
	}
	m, ok := s.members[n]
	if !ok {
		return nil, 0, notFound(s, n)
	}
	return io.NopCloser(io.NewSectionReader(s.f, m.off, m.size)), m.size, nil
}

func (s *tarStore) has(name string) bool {
	n, err := cleanMember(name)
	if err != nil {
		return false
	}
	_, ok := s.members[n]
	return ok
}

func (s *tarStore) where() string { return "archive " + s.file }

func (s *tarStore) Close() error { return s.f.Close() }
