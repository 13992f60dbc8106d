package supervise

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// The log keeps the workload's stdout and stderr apart, one JSON object per line as docker's
// json-file driver does: {"stream":"stdout","time":"...","log":"<base64>"}; log is bytes (base64
// in JSON) so that binary output survives. Each entry is one line of output (with its newline) or
// the unterminated rest of a write.

// Entry is one log line.
type Entry struct {
	Stream string    `json:"stream"` // stdout | stderr
	Time   time.Time `json:"time"`
	Log    []byte    `json:"log"`
}

// Log appends entries to a VM's log file; safe for concurrent streams.
type Log struct {
	mu  sync.Mutex
	f   *os.File
	enc *json.Encoder
	now func() time.Time
}

// OpenLog opens (creating) the log at path for appending.
func OpenLog(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return &Log{f: f, enc: json.NewEncoder(f), now: time.Now}, nil
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// Writer returns the writer of one stream.
func (l *Log) Writer(stream string) io.Writer { return streamWriter{l, stream} }

type streamWriter struct {
	l      *Log
	stream string
}

func (w streamWriter) Write(b []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	t := w.l.now()
	for rest := b; len(rest) > 0; {
		n := bytes.IndexByte(rest, '\n') + 1
		if n == 0 {
			n = len(rest)
		}
		if err := w.l.enc.Encode(Entry{Stream: w.stream, Time: t, Log: rest[:n]}); err != nil {
			return 0, fmt.Errorf("write log: %w", err)
		}
		rest = rest[n:]
	}
	return len(b), nil
}

// LogOptions select what ReadLog shows.
type LogOptions struct {
	Tail       int  // the last Tail entries; 0 = all
	Timestamps bool // prefix each entry with its RFC 3339 time, as docker logs -t
}

// ReadLog writes the log's entries to stdout and stderr by their stream and returns the offset
// read to (for following).
func ReadLog(path string, opts LogOptions, offset int64, stdout, stderr io.Writer) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return offset, fmt.Errorf("read log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return offset, fmt.Errorf("read log: %w", err)
	}
	var entries []Entry
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // an incomplete last line is read next time
		}
		if err != nil {
			return offset, fmt.Errorf("read log: %w", err)
		}
		offset += int64(len(line))
		var e Entry
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		entries = append(entries, e)
	}
	if opts.Tail > 0 && len(entries) > opts.Tail {
		entries = entries[len(entries)-opts.Tail:]
	}
	for _, e := range entries {
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		if opts.Timestamps {
			io.WriteString(w, e.Time.UTC().Format(time.RFC3339Nano)+" ")
		}
		if _, err := w.Write(e.Log); err != nil {
			return offset, err
		}
	}
	return offset, nil
}
