package kernel

import (
	"encoding/binary"
	"io"
	"os"
	"strings"
)

// compareNatural compares strings so that digit runs compare as numbers ("6.10" > "6.9").
func compareNatural(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			na, ra := digitRun(a)
			nb, rb := digitRun(b)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(na) != len(nb) {
				return sign(len(na) - len(nb))
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return sign(int(a[0]) - int(b[0]))
		}
		a, b = a[1:], b[1:]
	}
	return sign(len(a) - len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) (run, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// ImageVersion reads the kernel release from an x86 bzImage's setup header ("" when the file is
// not a bzImage or has no version string), e.g. "6.1.0-56-cloud-amd64".
func ImageVersion(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	var hdr [0x210]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return ""
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return ""
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	var buf [256]byte
	n, _ := f.ReadAt(buf[:], off)
	s := string(buf[:n])
	if i := strings.IndexAny(s, " \x00"); i >= 0 {
		s = s[:i]
	}
	return s
}
