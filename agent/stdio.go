package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// MaxChunk bounds the bytes one Read or Write carries (well below ttrpc's 4 MiB message limit).
const MaxChunk = 128 << 10

// Copy copies one output of process id to w until its EOF. It returns w's error, or the agent's.
func Copy(ctx context.Context, svc AgentService, id string, s Stream, w io.Writer) error {
	for {
		r, err := svc.Read(ctx, &ReadRequest{Id: id, Stream: s, Max: MaxChunk})
		if err != nil {
			return fmt.Errorf("read %s of %s: %w", streamName(s), id, err)
		}
		if r.Eof {
			return nil
		}
		if _, err := w.Write(r.Data); err != nil {
			return fmt.Errorf("write %s of %s: %w", streamName(s), id, err)
		}
	}
}

// Feed writes r to the stdin of process id until r's EOF, then closes that stdin.
func Feed(ctx context.Context, svc AgentService, id string, r io.Reader) error {
	buf := make([]byte, MaxChunk)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := svc.Write(ctx, &WriteRequest{Id: id, Data: buf[:n]}); err != nil {
				return fmt.Errorf("write stdin of %s: %w", id, err)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read stdin for %s: %w", id, rerr)
		}
	}
	if _, err := svc.CloseStdin(ctx, &CloseStdinRequest{Id: id}); err != nil {
		return fmt.Errorf("close stdin of %s: %w", id, err)
	}
	return nil
}

func streamName(s Stream) string {
	if s == Stream_STDERR {
		return "stderr"
	}
	return "stdout"
}
