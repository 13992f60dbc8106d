package vm

import (
	"github.com/c2vm/c2vm/bootcfg"
)

// WindowSize is a terminal size in character cells.
type WindowSize struct {
	Rows, Cols uint16
}

func (w WindowSize) line() string { return bootcfg.FormatWinsize(w.Rows, w.Cols) }

// requestResize sends the terminal size to the guest, or keeps it until the status port connects.
func (r *relay) requestResize(w WindowSize) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		r.winsize = &w
		return
	}
	r.status.Write([]byte(w.line()))
}
