package main

import (
	"io"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progress draws per-layer bars and the current stage on stderr when it is a terminal, and nothing
// otherwise.
type progress struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*mpb.Bar
	step *mpb.Bar
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	return &progress{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40)), bars: map[string]*mpb.Bar{}}
}

// Layer reports done of total compressed bytes read for a layer.
func (p *progress) Layer(layer string, done, total int64) {
	if p.p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.bars[layer]
	if !ok {
		name := layer
		if len(name) > 19 {
			name = name[7:19]
		}
		b = p.p.AddBar(total, mpb.PrependDecorators(decor.Name("layer "+name+" ")),
			mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")))
		p.bars[layer] = b
	}
	b.SetCurrent(done)
	if done >= total {
		b.SetTotal(total, true)
	}
}

// Step shows the stage the conversion is in.
func (p *progress) Step(name string) {
	if p.p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.step != nil {
		p.step.Increment() // current reaches the total of 1: the spinner completes
	}
	p.step = p.p.AddSpinner(1, mpb.PrependDecorators(decor.Name(name, decor.WC{W: 16, C: decor.DindentRight})),
		mpb.BarFillerClearOnComplete(),
		mpb.AppendDecorators(decor.OnComplete(decor.Elapsed(decor.ET_STYLE_GO), "done")))
}

// Wait finishes the bars.
func (p *progress) Wait() {
	if p.p == nil {
		return
	}
	p.mu.Lock()
	if p.step != nil {
		p.step.Increment()
	}
	for _, b := range p.bars {
		b.Abort(false)
	}
	p.mu.Unlock()
	p.p.Wait()
}
