package vm

import (
	"bytes"
	"io"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/c2vm/c2vm/bootcfg"
)

// relay copies the guest's serial channels to the host's writers.
type relay struct {
	cfg     Config
	wg      sync.WaitGroup
	console tail

	mu       sync.Mutex
	status   Channel
	code     int
	haveCode bool
	pending  int         // stop requests made before the status port connected
	winsize  *WindowSize // the latest size asked for before the status port connected

	ready     chan struct{} // closed at the init's first line on the status port
	readyOnce sync.Once

	// unpackFailed is closed when the kernel console says the initramfs did not unpack: the
	// boot config and spec (and an initrd-format rootfs) may be missing, so the VM must not go on.
	unpackFailed chan struct{}
	unpackOnce   sync.Once

	warm warmState // the guest's ready point and the host's go line (snapshot.go)
}

func newRelay(cfg Config, p *ports, ch channels, carry carryOver) *relay {
	cfg = lockWriters(cfg)
	r := &relay{cfg: cfg, ready: make(chan struct{}), unpackFailed: make(chan struct{}),
		pending: carry.stops, winsize: carry.winsize}
	r.serve(p, portConsole, func(c Channel) { r.copyConsole(c) })
	r.serve(ch, portStdout, func(c Channel) { io.Copy(orDiscard(cfg.Stdout), c) })
	r.serve(ch, portStderr, func(c Channel) { io.Copy(orDiscard(cfg.Stderr), c) })
	r.serve(ch, portStatus, r.readStatus)
	if _, vsock := ch.(*vsockChannels); cfg.Stdin != nil || vsock {
		// Over vsock the guest cannot tell whether a stdin channel comes, so there always is one:
		// without Stdin it ends at once, as /dev/null does.
		in := cfg.Stdin
		if in == nil {
			in = strings.NewReader("")
		}
		go feedStdin(ch, p.closed, r.stdinGate(), in) // not waited for: the host's stdin may never end
	}
	return r
}

// serve connects the channel with the given key and runs fn on it; once the boot's ports close,
// a channel that is still connecting gives up, and one that is connected is closed.
func (r *relay) serve(ch channels, key string, fn func(Channel)) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		c, err := ch.connect(key)
		if err != nil {
			return
		}
		defer c.Close()
		fn(c)
	}()
}

func (r *relay) wait() { r.wg.Wait() }

func (r *relay) copyConsole(c io.Reader) {
	w := io.Writer(&r.console)
	if r.cfg.Console != nil {
		w = io.MultiWriter(&r.console, r.cfg.Console)
	}
	watch := &watcher{marker: []byte(initramfsFailure), found: func() {
		r.unpackOnce.Do(func() { close(r.unpackFailed) })
	}}
	io.Copy(io.MultiWriter(w, watch), c)
}

// initramfsFailure is what the kernel prints (at KERN_EMERG, so even with quiet) when it cannot
// unpack the initrd, typically because it does not fit in the guest's memory.
const initramfsFailure = "Initramfs unpacking failed"

// watcher calls found once the marker has been written to it, across write boundaries.
type watcher struct {
	marker []byte
	found  func()
	carry  []byte
}

func (w *watcher) Write(b []byte) (int, error) {
	buf := append(w.carry, b...)
	if bytes.Contains(buf, w.marker) {
		w.found()
	}
	if keep := len(w.marker) - 1; len(buf) > keep {
		buf = buf[len(buf)-keep:]
	}
	w.carry = append(w.carry[:0], buf...)
	return len(b), nil
}

func (r *relay) readStatus(c Channel) {
	r.mu.Lock()
	r.status = c
	if r.winsize != nil {
		c.Write([]byte(r.winsize.line()))
	}
	for ; r.pending > 0; r.pending-- {
		c.Write([]byte(bootcfg.StopLine + "\n"))
	}
	r.flushGoLocked()
	r.mu.Unlock()
	msgs := r.cfg.Messages
	if msgs == nil {
		msgs = orDiscard(r.cfg.Stderr)
	}
	scanLines(c, func(line string) {
		r.readyOnce.Do(func() { close(r.ready) })
		if strings.TrimRight(line, "\r") == bootcfg.ReadyLine {
			return
		}
		if strings.TrimRight(line, "\r") == bootcfg.ReadyPointLine {
			r.atReadyPoint()
			return
		}
		if code, ok := bootcfg.ParseStatus(line); ok {
			r.mu.Lock()
			r.code, r.haveCode = code, true
			r.mu.Unlock()
			return
		}
		io.WriteString(msgs, strings.TrimRight(line, "\r")+"\n")
	})
}

// undelivered returns the requests the guest never received, for the boot that replaces this one.
func (r *relay) undelivered() carryOver {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status != nil {
		return carryOver{}
	}
	return carryOver{stops: r.pending, winsize: r.winsize}
}

func (r *relay) requestStop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		r.pending++
		return
	}
	r.status.Write([]byte(bootcfg.StopLine + "\n"))
}

// isReady reports whether the guest init has written on the status port.
func (r *relay) isReady() bool {
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

func (r *relay) isUnpackFailed() bool {
	select {
	case <-r.unpackFailed:
		return true
	default:
		return false
	}
}

func (r *relay) exitCode() (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code, r.haveCode
}

// lockWriters makes the host writers safe for the relay's goroutines: writers that are the same
// (stderr, messages and console often are) share one lock. The wrapper also hides ReadFrom, so a
// copy blocked on a quiet port never holds a writer's buffer across another goroutine's write.
func lockWriters(cfg Config) Config {
	locked := map[io.Writer]*lockedWriter{}
	wrap := func(w *io.Writer) {
		if *w == nil || !reflect.TypeOf(*w).Comparable() {
			if *w != nil {
				*w = &lockedWriter{w: *w}
			}
			return
		}
		lw, ok := locked[*w]
		if !ok {
			lw = &lockedWriter{w: *w}
			locked[*w] = lw
		}
		*w = lw
	}
	for _, w := range []*io.Writer{&cfg.Stdout, &cfg.Stderr, &cfg.Console, &cfg.Messages} {
		wrap(w)
	}
	return cfg
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// tail keeps the last lines written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 16 * 1024

// escapes are terminal escape sequences (firmware and some consoles colour or clear the screen):
// CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \\) and two-byte ones (ESC c, ESC 7).
var escapes = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[ -/]*[0-~])`)

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 2*tailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBytes:]...)
	}
	return len(b), nil
}

// String returns the last lines (consoleTailLines), without carriage returns and terminal escape
// sequences.
func (t *tail) String() string {
	lines := strings.Split(strings.TrimRight(t.text(), "\n"), "\n")
	if len(lines) > consoleTailLines {
		lines = lines[len(lines)-consoleTailLines:]
	}
	return strings.Join(lines, "\n")
}

// text returns all that is kept (at least the last tailBytes), cleaned as String cleans it: a
// kernel panic's stack trace is longer than consoleTailLines, and its first line says why.
func (t *tail) text() string {
	t.mu.Lock()
	s := strings.ReplaceAll(string(t.buf), "\r", "")
	t.mu.Unlock()
	return escapes.ReplaceAllString(s, "")
}
