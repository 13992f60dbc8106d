package guestinit

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

// eofThen reads EOF a few times (the host end not connected yet), then its data.
type eofThen struct {
	eofs int
	r    io.Reader
}

func (e *eofThen) Read(b []byte) (int, error) {
	if e.eofs > 0 {
		e.eofs--
		return 0, io.EOF
	}
	return e.r.Read(b)
}

func TestReadGo(t *testing.T) {
	entropy := bytes.Repeat([]byte{7}, bootcfg.GoEntropyBytes)
	now := time.Unix(1764668400, 5)
	goLine := bootcfg.FormatGo(entropy, now)
	tests := []struct {
		name      string
		in        string
		eofs      int
		wantEarly []string
		wantRest  string
	}{
		{name: "go only", in: goLine},
		{name: "after EOFs", in: goLine, eofs: 3},
		{name: "stop before go", in: "stop\n\n" + goLine, wantEarly: []string{"stop"}},
		{name: "leaves what follows", in: goLine + "stop\n", wantRest: "stop\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader([]byte(tt.in))
			clock := newClock()
			e, at, early, err := readGo(&eofThen{eofs: tt.eofs, r: r}, clock)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e, entropy) || !at.Equal(now) || !reflect.DeepEqual(early, tt.wantEarly) {
				t.Errorf("readGo = %x, %v, %q; want %x, %v, %q", e, at, early, entropy, now, tt.wantEarly)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tt.wantRest {
				t.Errorf("left %q for the run step, want %q", rest, tt.wantRest)
			}
		})
	}
}

func TestRandPoolInfo(t *testing.T) {
	b := randPoolInfo([]byte{1, 2, 3, 4, 5})
	if got := binary.NativeEndian.Uint32(b[0:]); got != 40 {
		t.Errorf("entropy_count = %d bits, want 40", got)
	}
	if got := binary.NativeEndian.Uint32(b[4:]); got != 5 {
		t.Errorf("buf_size = %d, want 5", got)
	}
	if len(b) != 16 || !bytes.Equal(b[8:13], []byte{1, 2, 3, 4, 5}) {
		t.Errorf("buffer = %x, want the entropy padded to 32-bit words", b[8:])
	}
}
