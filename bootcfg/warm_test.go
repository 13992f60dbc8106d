package bootcfg

import (
	"bytes"
	"testing"
	"time"
)

func TestGoLine(t *testing.T) {
	e := bytes.Repeat([]byte{0xab, 0x01}, GoEntropyBytes/2)
	now := time.Unix(1764668400, 123456789)
	line := FormatGo(e, now)
	got, at, ok := ParseGo(line)
	if !ok || !bytes.Equal(got, e) || !at.Equal(now) {
		t.Fatalf("ParseGo(FormatGo) = %x, %v, %v", got, at, ok)
	}
	for _, bad := range []string{"", "go", "go zz 1", "go ab", "go ab -1", "stop", "go  1", "gone ab 1"} {
		if _, _, ok := ParseGo(bad); ok {
			t.Errorf("ParseGo(%q) accepted", bad)
		}
	}
}
