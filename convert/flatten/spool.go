package flatten

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// spool holds every regular file's content, back to back, in one unlinked temporary file, so
// memory does not grow with the image's data size.
type spool struct {
	f   *os.File
	w   *bufio.Writer
	off int64
	buf []byte // reused by add and copyTo: io.Copy would allocate 32 KiB per file
}

func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, "c2vm-flatten-*.spool")
	if err != nil {
		return nil, fmt.Errorf("flatten: spool: %w", err)
	}
	// Unlink at once: the open descriptor keeps the data, and nothing is left behind even if the
	// process dies before Close.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("flatten: spool: %w", err)
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 1<<20), buf: make([]byte, 256<<10)}, nil
}

// add copies exactly size bytes from r and returns their offset.
func (s *spool) add(r io.Reader, size int64) (int64, error) {
	off := s.off
	n, err := copyBuf(s.w, io.LimitReader(r, size), s.buf)
	s.off += n
	if err == nil && n < size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return 0, err
	}
	return off, nil
}

// copyTo writes size bytes at off to w.
func (s *spool) copyTo(w io.Writer, off, size int64) error {
	n, err := copyBuf(w, s.section(off, size), s.buf)
	if err == nil && n < size {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// copyBuf is io.CopyBuffer without the ReaderFrom/WriterTo shortcuts, which allocate per call.
func copyBuf(w io.Writer, r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (s *spool) flush() error { return s.w.Flush() }

func (s *spool) section(off, size int64) *io.SectionReader {
	return io.NewSectionReader(s.f, off, size)
}

func (s *spool) close() error { return s.f.Close() }
