package share

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestConnect starts a virtiofsd, asks it for its vhost-user features over the socket Connect
// returns, and checks that Close leaves no process and no socket file behind.
func TestConnect(t *testing.T) {
	bin, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	s := &Server{Dir: t.TempDir(), Binary: bin}
	f, err := s.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("Connect left %v in TMPDIR", left)
	}
	// VHOST_USER_GET_FEATURES (1), flags = version 1, no payload; the reply carries a u64.
	var msg [12]byte
	binary.LittleEndian.PutUint32(msg[0:], 1)
	binary.LittleEndian.PutUint32(msg[4:], 1)
	if _, err := f.Write(msg[:]); err != nil {
		t.Fatal(err)
	}
	f.SetReadDeadline(time.Now().Add(10 * time.Second))
	var reply [20]byte
	if _, err := io.ReadFull(f, reply[:]); err != nil {
		t.Fatalf("no vhost-user reply from virtiofsd: %v", err)
	}
	if req, size := binary.LittleEndian.Uint32(reply[0:]), binary.LittleEndian.Uint32(reply[8:]); req != 1 || size != 8 {
		t.Errorf("reply: request %d size %d, want 1 and 8", req, size)
	}
	if len(s.procs) != 1 {
		t.Fatalf("%d processes, want 1", len(s.procs))
	}
	p := s.procs[0].Process
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(p.Pid))); err == nil {
		t.Errorf("virtiofsd %d still exists after Close", p.Pid)
	}
	if _, err := s.Connect(context.Background()); err == nil {
		t.Error("Connect after Close succeeded")
	}
}
