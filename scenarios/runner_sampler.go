package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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
	// pollEvery is the base period of list_pipelines + status polls for
	// targets without inspect; it stretches to pollBackoff times the last
	// poll's duration (at most pollMax) when answers slow, so a serial
	// server spends at most about a third of its time on the sampler.
	pollEvery   = 500 * time.Millisecond
	pollBackoff = 2
	pollMax     = 2 * time.Second
	// pollTimeout bounds each sampling request (for a serial target, the
	// queue timeout if longer: its answer may wait behind one request).
	pollTimeout = time.Second
	// pollStatusCap bounds the status requests of one poll.
	pollStatusCap = 16
)

// sample observes the target until ctx ends: the process census every
// censusEvery, and the manager's view — inspect + list_pipelines when the
// target has inspect, else list_pipelines + each pipeline's status (see
// pollOnce). The first "unknown command" answer to inspect switches to
// polls for the rest of the run. A sample that times out is skipped or
// recorded as unanswered: a manager that stops answering shows in the
// clients' history.
func (r *runner) sample(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		repeat(ctx, censusEvery, func() time.Duration {
			start := r.since()
			r.recordCensus(start, r.currentPhase(), r.takeCensus())
			return censusEvery
		})
	})
	c := &protocol.Client{Addr: r.tgt.addr, Timeout: pollTimeout, Traceparent: unsampledTraceparent}
	if r.profile.Serial {
		c.Timeout = max(pollTimeout, r.bounds.QueueTimeout)
	}
	useInspect := r.profile.Has(protocol.TypeInspect)
	first := inspectEvery
	if !useInspect {
		first = pollEvery
	}
	repeat(ctx, first, func() time.Duration {
		if useInspect && !r.inspectOnce(ctx, c) {
			useInspect = false
		}
		if useInspect {
			return inspectEvery
		}
		began := time.Now()
		r.pollOnce(ctx, c)
		return min(max(pollEvery, pollBackoff*time.Since(began)), pollMax)
	})
}

// repeat calls f after first, then after each wait f returns, until ctx
// ends.
func repeat(ctx context.Context, first time.Duration, f func() time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(f())
		}
	}
}

// inspectOnce takes one inspect sample; false when the target does not
// know inspect (answered invalid_payload), so the sampler stops asking.
func (r *runner) inspectOnce(ctx context.Context, c *protocol.Client) bool {
	resp, err := c.Inspect(ctx)
	if err != nil {
		var perr *protocol.Error
		return !(errors.As(err, &perr) && perr.Type == protocol.ErrTypeInvalidPayload)
	}
	listed, err := c.List(ctx)
	if err != nil {
		return true
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
	return true
}

// pollOnce samples a target without inspect: list_pipelines, then the
// status of every listed or live pipeline (at most pollStatusCap). On a
// serial server one unanswered status means every later request waits
// behind it, so the poll stops there.
func (r *runner) pollOnce(ctx context.Context, c *protocol.Client) {
	listed, err := c.List(ctx)
	// Stamped when the list was answered: that is when the manager's view
	// was seen (a serial server may have answered late).
	s := PollSample{Time: int64(r.since())}
	if err != nil {
		s.ListError = err.Error()
	} else {
		s.Listed = listed
	}
	live := r.ids.snapshot()
	ids := slices.Clone(listed)
	for _, k := range slices.Sorted(maps.Keys(live)) {
		if !slices.Contains(ids, live[k]) {
			ids = append(ids, live[k])
		}
	}
	for _, id := range ids[:min(len(ids), pollStatusCap)] {
		if err != nil && !isAnswered(err) {
			break
		}
		var resp protocol.Response
		resp, err = c.Status(ctx, id)
		s.Status = append(s.Status, statusPoll(id, resp, err))
	}
	r.mu.Lock()
	r.polls = append(r.polls, s)
	r.mu.Unlock()
	if s.ListError != "" {
		return
	}
	// A logical pipeline whose id left the list is lost; the keeper
	// re-starts it.
	for k, id := range live {
		if !slices.Contains(listed, id) {
			r.ids.markLost(k, id)
		}
	}
}

// isAnswered reports whether err is a failure answer (the server answered).
func isAnswered(err error) bool {
	var perr *protocol.Error
	return errors.As(err, &perr)
}

// statusPoll condenses one status answer.
func statusPoll(id string, resp protocol.Response, err error) StatusPoll {
	p := StatusPoll{PipelineID: id}
	var perr *protocol.Error
	switch {
	case err == nil:
		p.Answered, p.OK = true, true
	case errors.As(err, &perr):
		p.Answered, p.ErrorType = true, perr.Type
		return p
	default:
		return p
	}
	p.States = reportStates(resp.Fields)
	return p
}

// sweepWait bounds how long the sweep census waits for processes the
// manager has just SIGKILLed to die (a signal is delivered when the target
// next runs); sweepPoll is its polling period: no signal exists for
// another process's death.
const (
	sweepWait = 300 * time.Millisecond
	sweepPoll = 20 * time.Millisecond
)

// sweepWatcher is the launcher as the embedded manager sees it: its Close
// (the manager's last shutdown step, before the launcher's last-resort
// cleanup) first records a census (PhaseSweep) of what the manager's own
// stop sequence left alive.
type sweepWatcher struct {
	launch.Launcher
	r    *runner
	once sync.Once
}

// watchSweep wraps the launcher that wrap (nil: none) returns.
func (r *runner) watchSweep(wrap func(launch.Launcher) launch.Launcher) func(launch.Launcher) launch.Launcher {
	return func(l launch.Launcher) launch.Launcher {
		if wrap != nil {
			l = wrap(l)
		}
		return &sweepWatcher{Launcher: l, r: r}
	}
}

func (w *sweepWatcher) Close() error {
	w.once.Do(func() {
		if w.r.tgt == nil {
			return // the start failed: there is no run to judge
		}
		w.r.mu.Lock()
		killed := w.r.shutdownRec.Signal == "SIGKILL" // emulated: the sweep is the kill
		w.r.mu.Unlock()
		deadline := time.Now().Add(sweepWait)
		start := w.r.since()
		procs := w.r.takeCensus()
		for !killed && liveProcs(procs) > 0 && time.Now().Before(deadline) {
			time.Sleep(sweepPoll)
			start = w.r.since()
			procs = w.r.takeCensus()
		}
		w.r.recordCensus(start, PhaseSweep, procs)
	})
	return w.Launcher.Close()
}

func liveProcs(ps []launch.ProcInfo) int {
	n := 0
	for _, p := range ps {
		if !p.Zombie() {
			n++
		}
	}
	return n
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

// recordCensus records a census that began at start.
func (r *runner) recordCensus(start time.Duration, phase string, procs []launch.ProcInfo) {
	if procs == nil {
		procs = []launch.ProcInfo{}
	}
	s := CensusSample{Time: int64(start), Phase: phase, Procs: procs, ManagerRSS: r.managerRSS()}
	s.End = int64(r.since())
	r.mu.Lock()
	r.census = append(r.census, s)
	r.mu.Unlock()
}

// managerRSS reads the manager's resident bytes: this process for the
// embedded manager (the manager's RAM admission counts the same pid), the
// target's pid otherwise; 0 when unknown or gone.
func (r *runner) managerRSS() uint64 {
	pid := r.tgt.managerPid
	if r.tgt.embedded {
		pid = os.Getpid()
	}
	if pid <= 0 {
		return 0
	}
	info, err := launch.Stat(pid)
	if err != nil || info.Zombie() {
		return 0
	}
	return info.RSS
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
