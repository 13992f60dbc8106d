package kernel

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

const arMagic = "!<arch>\n"

// arMember is one file in an ar archive.
type arMember struct {
	Name string
	Data *io.SectionReader
}

// readAr lists the members of the ar archive (the outer format of a .deb) in r.
func readAr(r io.ReaderAt, size int64) ([]arMember, error) {
	var magic [len(arMagic)]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil || string(magic[:]) != arMagic {
		return nil, fmt.Errorf("not a .deb (ar archive): bad magic")
	}
	var members []arMember
	off := int64(len(arMagic))
	for off < size {
		var hdr [60]byte
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return nil, fmt.Errorf("ar header at offset %d: %w", off, err)
		}
		if string(hdr[58:60]) != "`\n" {
			return nil, fmt.Errorf("ar header at offset %d: bad terminator", off)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		n, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || n < 0 || off+60+n > size {
			return nil, fmt.Errorf("ar member %q at offset %d: bad size %q", name, off, strings.TrimSpace(string(hdr[48:58])))
		}
		members = append(members, arMember{Name: name, Data: io.NewSectionReader(r, off+60, n)})
		off += 60 + n + n%2
	}
	return members, nil
}

// member returns the first member whose name starts with prefix (e.g. "data.tar").
func member(ms []arMember, prefix string) (arMember, bool) {
	for _, m := range ms {
		if strings.HasPrefix(m.Name, prefix) {
			return m, true
		}
	}
	return arMember{}, false
}
