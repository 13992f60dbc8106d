package shuttle

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// MaxFrame is the largest message either side accepts (spindle's limit).
const MaxFrame = 1 << 20

// VsockPortArg is the kernel command line parameter through which spindle gives the guest the
// host's vsock port ("shuttle.vsock_port=N"); DefaultVsockPort is spindle's default N.
const (
	VsockPortArg     = "shuttle.vsock_port"
	DefaultVsockPort = 10240
	// HostCID is the vsock CID the guest dials (VMADDR_CID_HOST).
	HostCID = 2
)

// AppendFrame appends m's frame (length prefix and message) to b.
func AppendFrame(b []byte, m *Message) ([]byte, error) {
	body := Marshal(m)
	if len(body) > MaxFrame {
		return b, fmt.Errorf("shuttle message %q: %d bytes, more than the limit of %d", m.ID, len(body), MaxFrame)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

// ReadMessage reads one frame and returns its message, validated. io.EOF means the stream ended
// between frames.
func ReadMessage(r io.Reader) (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("shuttle frame header: %w", err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, fmt.Errorf("shuttle frame of %d bytes, more than the limit of %d", n, MaxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("shuttle frame of %d bytes: %w", n, noEOF(err))
	}
	m, err := Unmarshal(body)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Writer writes whole frames to a stream, one at a time, from any number of goroutines.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write validates m and writes its frame in one write.
func (w *Writer) Write(m *Message) error {
	if err := m.Validate(); err != nil {
		return err
	}
	frame, err := AppendFrame(nil, m)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(frame); err != nil {
		return fmt.Errorf("write shuttle message %q: %w", m.ID, err)
	}
	return nil
}
