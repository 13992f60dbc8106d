// Package fdio holds the one file-descriptor helper the host CLI and the guest init share.
package fdio

import "os"

// Control runs fn on f's descriptor without f.Fd(), which would switch f to blocking mode and keep
// Close from interrupting a pending Read (the relays of terminals and serial ports rely on that).
func Control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
