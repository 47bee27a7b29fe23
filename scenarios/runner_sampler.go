package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// Sampling periods of the manager's view and of the process census.
const (
	inspectEvery = 200 * time.Millisecond
	censusEvery  = 500 * time.Millisecond
)

// sample polls inspect + list_pipelines and takes a census until ctx ends.
// A sample that times out is skipped: a manager that stops answering shows
// in the clients' history, not here.
func (r *runner) sample(ctx context.Context) {
	c := &protocol.Client{Addr: r.tgt.addr, Timeout: time.Second, Traceparent: unsampledTraceparent}
	inspect := time.NewTicker(inspectEvery)
	defer inspect.Stop()
	census := time.NewTicker(censusEvery)
	defer census.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-inspect.C:
			r.inspectOnce(ctx, c)
		case <-census.C:
			r.recordCensus(r.currentPhase(), r.takeCensus())
		}
	}
}

func (r *runner) inspectOnce(ctx context.Context, c *protocol.Client) {
	resp, err := c.Inspect(ctx)
	if err != nil {
		return
	}
	listed, err := c.List(ctx)
	if err != nil {
		return
	}
	var infos []protocol.PipelineInfo
	if b, err := json.Marshal(resp.Fields["pipelines"]); err == nil {
		_ = json.Unmarshal(b, &infos)
	}
	s := InspectSample{Time: int64(r.since()), Pipelines: infos, Listed: listed}
	present := map[string]bool{}
	r.mu.Lock()
	r.inspects = append(r.inspects, s)
	for _, p := range infos {
		if p.Pgid > 0 {
			r.pgids[p.Pgid] = true
		}
		if !p.MarkedForRemoval && p.State != protocol.StateTerminating && p.State != protocol.StateFailed {
			present[p.PipelineID] = true
		}
	}
	r.mu.Unlock()
	// A logical pipeline whose id left the table (or is on its way out) is
	// lost; the keeper re-starts it.
	for k, id := range r.ids.snapshot() {
		if !present[id] {
			r.ids.markLost(k, id)
		}
	}
}

// takeCensus lists the manager's workers and their descendants now.
func (r *runner) takeCensus() []launch.ProcInfo {
	r.mu.Lock()
	pgids := make([]int, 0, len(r.pgids))
	for g := range r.pgids {
		pgids = append(pgids, g)
	}
	r.mu.Unlock()
	slices.Sort(pgids)
	return r.tgt.census(pgids)
}

func (r *runner) recordCensus(phase string, procs []launch.ProcInfo) {
	if procs == nil {
		procs = []launch.ProcInfo{}
	}
	r.mu.Lock()
	r.census = append(r.census, CensusSample{Time: int64(r.since()), Phase: phase, Procs: procs})
	r.mu.Unlock()
}

// progress reports phases: a line each on a plain writer, a redrawn bar
// on a terminal. A nil *progress does nothing.
type progress struct {
	w        io.Writer
	terminal bool
	name     string
	seed     int64
	tl       Timeline

	mu   sync.Mutex
	r    *runner
	cur  string
	stop chan struct{}
	done chan struct{}
}

func newProgress(w io.Writer, name string, seed int64, tl Timeline) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, name: name, seed: seed, tl: tl}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// begin starts the bar's redraw loop on a terminal.
func (p *progress) begin(r *runner) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.r = r
	p.mu.Unlock()
	if !p.terminal {
		return
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
}

// end stops the redraw loop and leaves the cursor on a fresh line.
func (p *progress) end() {
	if p == nil {
		return
	}
	if p.terminal && p.stop != nil {
		close(p.stop)
		<-p.done
		p.draw()
		fmt.Fprintln(p.w)
	}
}

func (p *progress) phase(name string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.cur = name
	r := p.r
	p.mu.Unlock()
	if p.terminal {
		return
	}
	at := time.Duration(0)
	if r != nil && !r.start.IsZero() {
		at = r.since().Round(100 * time.Millisecond)
	}
	fmt.Fprintf(p.w, "corral run: %s seed %d: %-8s at %6s%s\n", p.name, p.seed, name, at, p.counts())
}

// counts summarises the history so far.
func (p *progress) counts() string {
	p.mu.Lock()
	r := p.r
	p.mu.Unlock()
	if r == nil || r.hist == nil {
		return ""
	}
	n := map[string]int{}
	for _, o := range r.hist.Ops() {
		n[o.Type]++
	}
	return fmt.Sprintf("  ops %d (ok %d, fail %d, info %d), faults %d",
		n[OpInvoke], n[OpOK], n[OpFail], n[OpInfo], r.faultsFired.Load())
}

// draw redraws the bar: [#####.....] 42% chaos 25s/60s ...
func (p *progress) draw() {
	p.mu.Lock()
	r, phase := p.r, p.cur
	p.mu.Unlock()
	if r == nil || r.start.IsZero() {
		return
	}
	total := p.tl.Shutdown + 2*time.Second
	el := r.since()
	frac := min(float64(el)/float64(total), 1)
	const width = 30
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	fmt.Fprintf(p.w, "\r[%s] %3.0f%% %-8s %5.0fs/%.0fs%s\x1b[K", bar, frac*100, phase, el.Seconds(), total.Seconds(), p.counts())
}
