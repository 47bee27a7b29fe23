package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// maxInFlight bounds each client's concurrent commands: clients are open
// loop (commands leave at their planned time, whether or not the previous
// one was answered), but a manager that stops answering must not make the
// harness open thousands of connections.
const maxInFlight = 8

// keeperProcess is the client that re-starts lost logical pipelines, so
// the workload keeps Scenario.Pipelines alive and faults find a target.
const keeperProcess = "client-keeper"

// pipelines maps logical pipeline numbers to the ids the manager gave
// them, and tracks the ones lost (crashed, killed, terminated).
type pipelines struct {
	mu   sync.Mutex
	ids  map[int]string
	lost map[int]bool
	kick chan struct{}
}

func newPipelines() *pipelines {
	return &pipelines{ids: map[int]string{}, lost: map[int]bool{}, kick: make(chan struct{}, 1)}
}

func (p *pipelines) get(k int) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok := p.ids[k]
	return id, ok && !p.lost[k]
}

func (p *pipelines) set(k int, id string) {
	p.mu.Lock()
	p.ids[k] = id
	delete(p.lost, k)
	p.mu.Unlock()
}

// markLost records that k's pipeline id is gone; a stale id (k already
// re-started) is ignored. id "" (a failed init) marks k lost whether or not
// it ever had an id, so the keeper retries a pipeline whose first init
// failed.
func (p *pipelines) markLost(k int, id string) {
	p.mu.Lock()
	if cur, ok := p.ids[k]; id == "" || (ok && cur == id) {
		p.lost[k] = true
	}
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// byID returns the logical number of id (0 if none).
func (p *pipelines) byID(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range p.ids {
		if v == id {
			return k
		}
	}
	return 0
}

func (p *pipelines) lostOnes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for k := range p.lost {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (p *pipelines) snapshot() map[int]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int]string{}
	for k, v := range p.ids {
		if !p.lost[k] {
			out[k] = v
		}
	}
	return out
}

// placeholder is the id a command uses for a logical pipeline that has
// none yet: the manager answers not_found, a definite failure.
func placeholder(k int) string { return "corral-pipeline-" + strconv.Itoa(k) + "-not-started" }

// runClient plays one client's planned commands at their planned times.
func (r *runner) runClient(ctx context.Context, entries []PlanEntry) {
	sem := make(chan struct{}, maxInFlight)
	var ops sync.WaitGroup
	defer ops.Wait()
	for _, e := range entries {
		if e.NotApplicable != "" {
			continue // a command this target does not have
		}
		if !r.sleepUntil(ctx, e.At.D()) {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		ops.Go(func() {
			defer func() { <-sem }()
			if e.sendsInvalidInit() {
				r.sendInvalidInit(ctx, e.Process)
				return
			}
			r.command(ctx, e.Process, e.F, e.Target)
		})
	}
}

// command sends one command and records it in the history.
func (r *runner) command(ctx context.Context, process, f string, k int) {
	id := ""
	if k > 0 && f != protocol.TypeInit {
		var ok bool
		if id, ok = r.ids.get(k); !ok && id == "" {
			id = placeholder(k)
		}
	}
	_, err := r.send(ctx, process, f, k, id)
	var perr *protocol.Error
	if k > 0 && errors.As(err, &perr) && perr.Type == protocol.ErrTypeNotFound {
		r.ids.markLost(k, id)
	}
}

// send sends command f for logical pipeline k (0: none) to pipeline id
// and records it in the history; it returns the id an init created.
func (r *runner) send(ctx context.Context, process, f string, k int, id string) (string, error) {
	fields := map[string]any(nil)
	switch f {
	case protocol.TypeInit:
		fields = r.initFields
	case protocol.TypeConsumeResult:
		fields = map[string]any{"excluded_fields": []string{}}
	}
	return r.sendFields(ctx, process, f, k, id, fields, nil)
}

// sendFields is send with the request's fields and the invoke's value
// given.
func (r *runner) sendFields(ctx context.Context, process, f string, k int, id string, fields map[string]any, invValue any) (string, error) {
	// Without inspect, a pipeline's worker is the process that appears
	// in the manager's tree while its init runs (see workerMap).
	mapWorker := f == protocol.TypeInit && r.profile.Workers == WorkersCensus && r.tgt.managerPid > 0
	var before []launch.ProcInfo
	if mapWorker {
		before = workerCensus(r.tgt.managerPid, r.profile.Descendants)
	}
	inv := r.hist.Invoke(process, f, k, id, invValue)
	resp, traceID, err := r.tr.call(ctx, r.client, inv, k, fields)
	typ, errText := classify(err)
	var value any
	if resp.Status != "" {
		value = resp.Fields
		if value == nil {
			value = map[string]any{}
		}
	}
	pid := ""
	if f == protocol.TypeInit {
		pid = resp.PipelineID
	}
	if mapWorker {
		r.workers.observeInit(inv.Index, typ, pid, before, workerCensus(r.tgt.managerPid, r.profile.Descendants))
	}
	r.hist.Complete(inv, typ, pid, value, errText, traceID)
	if k > 0 {
		switch {
		case f == protocol.TypeInit && typ == OpOK && pid != "":
			r.ids.set(k, pid)
		case f == protocol.TypeInit:
			r.ids.markLost(k, "")
		case f == protocol.TypeTerminate && typ == OpOK:
			r.ids.markLost(k, id)
		}
	}
	return pid, err
}

// classify maps a client error to an operation type: no error is ok; a
// failure response, or a connection that was refused (the request never
// left), is fail; anything else (a timeout, a cut connection, garbage) is
// info, since the outcome is unknown.
func classify(err error) (typ, text string) {
	if err == nil {
		return OpOK, ""
	}
	var perr *protocol.Error
	var op *net.OpError
	switch {
	case errors.As(err, &perr):
		return OpFail, err.Error()
	case errors.As(err, &op) && op.Op == "dial":
		return OpFail, err.Error()
	}
	return OpInfo, err.Error()
}

// keep re-starts lost logical pipelines until ctx ends or the run reaches
// its final checks.
func (r *runner) keep(ctx context.Context) {
	last := map[int]time.Time{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.ids.kick:
		case <-tick.C:
		}
		if r.since() >= r.tl.Final {
			return
		}
		for _, k := range r.ids.lostOnes() {
			if time.Since(last[k]) < time.Second {
				continue // at most one re-start a second per pipeline
			}
			last[k] = time.Now()
			r.command(ctx, keeperProcess, protocol.TypeInit, k)
		}
	}
}

// sleepUntil waits until at after the run's start; false if ctx ended.
func (r *runner) sleepUntil(ctx context.Context, at time.Duration) bool {
	d := time.Until(r.start.Add(at))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *runner) since() time.Duration { return time.Since(r.start) }

func describeTarget(k int, id string) string {
	if id == "" {
		return fmt.Sprintf("pipeline #%d", k)
	}
	return fmt.Sprintf("pipeline #%d (%s)", k, id)
}

// ChurnStep is a burst of create-and-destroy cycles: at At (from the start
// of the chaos phase), Cycles clients each send an init and then a
// terminate of the pipeline it created; at most Concurrency cycles run at
// once (0: all).
type ChurnStep struct {
	At          Duration `yaml:"at"`
	Cycles      int      `yaml:"cycles"`
	Concurrency int      `yaml:"concurrency,omitempty"`
}

// maxChurn caps ChurnStep.Cycles.
const maxChurn = 1000

// churnProcess prefixes the client of one churn cycle: a client of its
// own, so that checkers judge its answers like any other client's.
const churnProcess = "client-churn-"

func validateChurn(s *Scenario, bad func(field, format string, args ...any)) {
	for i, c := range s.Churn {
		field := fmt.Sprintf("churn[%d]", i)
		if c.At < 0 || s.Duration > 0 && c.At > s.Duration {
			bad(field+".at", "must be within the chaos phase, 0..%s (got %s)", s.Duration.D(), c.At.D())
		}
		if c.Cycles < 1 || c.Cycles > maxChurn {
			bad(field+".cycles", "must be in 1..%d (got %d)", maxChurn, c.Cycles)
		}
		if c.Concurrency < 0 || c.Concurrency > c.Cycles {
			bad(field+".concurrency", "must be in 0..cycles (got %d)", c.Concurrency)
		}
	}
}

// runChurn plays the scenario's churn steps. A cycle's terminate is sent
// only when its init created a pipeline.
func (r *runner) runChurn(ctx context.Context) {
	n := 0
	for _, step := range r.sc.Churn {
		if !r.sleepUntil(ctx, r.tl.Chaos+step.At.D()) {
			return
		}
		conc := step.Concurrency
		if conc <= 0 {
			conc = step.Cycles
		}
		sem := make(chan struct{}, conc)
		var cycles sync.WaitGroup
		for range step.Cycles {
			n++
			process := churnProcess + strconv.Itoa(n)
			sem <- struct{}{}
			cycles.Go(func() {
				defer func() { <-sem }()
				if id, err := r.send(ctx, process, protocol.TypeInit, 0, ""); err == nil && id != "" {
					_, _ = r.send(ctx, process, protocol.TypeTerminate, 0, id)
				}
			})
		}
		cycles.Wait()
	}
}
