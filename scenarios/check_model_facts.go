package scenarios

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// The facts the model checkers share (pipeline_model, census_truth,
// availability): each pipeline's lifecycle evidence, the lists, the
// windows in which a pipeline may leave the table, and its worker pid.

// samplerSpan is how long before an inspect sample's time its two requests
// (inspect, then list_pipelines, each with a 1 s client timeout) may have
// been sent: the sample shows the table at some moment in
// [Time-samplerSpan, Time].
const samplerSpan = 2 * time.Second

// never is the open end of a window.
const never = int64(math.MaxInt64)

// removalBound is how long after the end of a cause (a fault healed, a
// failure answered) the manager may still take a pipeline out of its table:
// the hang-detection bound, then the stop sequence (grace + join).
func removalBound(b Bounds) time.Duration {
	return HangBound(b) + b.Grace + b.Join + b.Epsilon
}

// window is a stretch of the run, [From, To] in ns since start, during
// which something (Why, op Op) may have taken a pipeline away.
type window struct {
	From, To int64
	Why      string
	Op       *Op
	Kind     string // one of the cause* kinds
}

// Kinds of cause windows.
const (
	causeFault     = "fault"     // a fault of the nemesis on the pipeline or the manager
	causeTerminate = "terminate" // a client sent terminate
	causeShutdown  = "shutdown"  // the manager was signalled to stop
	causeInit      = "init"      // its init failed
	causeManager   = "manager"   // the manager failed a command or showed a health failure
	causeExit      = "exit"      // its worker left the census, or its source ended
)

// evidence is one observation about a pipeline's existence: present at
// some moment at or after At (an ok answer, a list that names it), or gone
// at some moment at or before At (not_found, a list without it, a
// terminate answered ok).
type evidence struct {
	At   int64
	Op   *Op // nil for an inspect sample's list
	What string
}

// life is what a run shows of one pipeline id: how it was created, every
// proof of its existence and absence, and the windows in which it may have
// left. Its death D (the moment it left the manager's table, if ever) must
// satisfy max(Present) < D <= min(Gone), inside some cause window.
type life struct {
	ID         string
	InitInv    *Op // the init that answered ok with this id
	InitOK     *Op
	FailedInit *Op // an init that answered failure carrying this id
	Present    []evidence
	Gone       []evidence
	Causes     []window
}

// listObs is one list_pipelines answer: the table at a moment in [Lo, Hi].
type listObs struct {
	Lo, Hi int64
	IDs    map[string]bool
	Op     *Op    // nil for a sampled list
	Source string // what took a sampled list
}

func (l listObs) describe() string {
	if l.Op != nil {
		return describeOp(l.Op)
	}
	return l.Source
}

// facts indexes a run for the model checkers: each pipeline's life, the
// lists, the worker pid the manager reported for each id.
type facts struct {
	d      *RunData
	v      *opView
	lives  map[string]*life
	ids    []string // in order of first appearance
	lists  []listObs
	pids   map[string]int // id -> worker pid, from inspect
	owners map[int]int    // pid -> how many ids inspect gave it
	// global are causes for every pipeline: the manager's shutdown and
	// manager-level faults.
	global []window
	// unknownInits are client inits whose answer named no id (timeouts):
	// each may have made one pipeline the history never names.
	unknownInits []*Op
	firstInit    int64 // invoke time of the first client init; -1 if none
	// refusable are the mute and resume invokes whose failure the
	// protocol allows (the stream may already have been in the state
	// asked for); filled by judgeStates.
	refusable map[int]bool
	// unknownFaults say which faults of the run the catalogue does not
	// know: their effect cannot be modelled, so no verdict is valid.
	unknownFaults []string
}

// errorType is the protocol error type a failed op's text starts with
// ("not_found: ..."), or "" when the op did not fail with a protocol error.
func opErrorType(c *Op) string {
	t, _, ok := strings.Cut(c.Error, ":")
	if !ok {
		return ""
	}
	switch t {
	case protocol.ErrTypeInvalidPayload, protocol.ErrTypeAuthorisation, protocol.ErrTypeNotFound,
		protocol.ErrTypeOperation, protocol.ErrTypeInternal:
		return t
	}
	return ""
}

// Outcomes of a command for the model.
const (
	outOK       = iota // it happened
	outNoEffect        // it definitely did not: refused before the manager acted
	outUnknown         // it may have happened, then or later (a timeout, a lost answer)
)

// outcomeOf classifies a command's completion (nil: never completed). A
// failure the manager answered before touching the worker (not_found,
// invalid_payload, authorisation_error) or a refused connection had no
// effect; an operation_error may come from a timeout after which the
// worker still runs the command, so it is unknown, as info is.
func outcomeOf(c *Op) int {
	switch {
	case c == nil:
		return outUnknown
	case c.Type == OpOK:
		return outOK
	case c.Type == OpFail:
		switch opErrorType(c) {
		case "", protocol.ErrTypeNotFound, protocol.ErrTypeInvalidPayload, protocol.ErrTypeAuthorisation:
			return outNoEffect
		}
	}
	return outUnknown
}

// pipelineCommands are the commands sent to one pipeline's worker.
var pipelineCommands = []string{protocol.TypeStatus, protocol.TypeConsumeResult, protocol.TypeMute, protocol.TypeResume}

// faultEnd is when a fault's window of effect closes: its heal's answer,
// or its own answer for an instant fault (no "for"); never when a lasting
// fault was not healed.
func faultEnd(w faultWindow) int64 {
	if w.Healed {
		return w.End
	}
	if _, lasting := paramField(valueFields(w.Invoke.Value), "for_seconds"); lasting {
		return never
	}
	if w.OK != nil {
		return w.OK.Time
	}
	if c := w.Invoke; c != nil {
		return c.Time + int64(healBound)
	}
	return never
}

func addTo(t int64, d time.Duration) int64 {
	if t == never {
		return never
	}
	return t + int64(d)
}

// gatherFacts builds the model's view of a run.
func gatherFacts(d *RunData) *facts {
	f := &facts{d: d, v: newOpView(d.Ops), lives: map[string]*life{}, pids: map[string]int{}, owners: map[int]int{}, firstInit: -1}
	b := d.Bounds
	removal := removalBound(b)
	get := func(id string) *life {
		l, ok := f.lives[id]
		if !ok {
			l = &life{ID: id}
			f.lives[id] = l
			f.ids = append(f.ids, id)
		}
		return l
	}
	// Inits first, so later rules know which ids came from an init.
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !isClientProcess(inv.Process) || inv.F != protocol.TypeInit {
			continue
		}
		if f.firstInit < 0 {
			f.firstInit = inv.Time
		}
		c := f.v.completion(inv)
		if c == nil || c.PipelineID == "" {
			if c == nil || c.Type == OpInfo {
				f.unknownInits = append(f.unknownInits, inv)
			}
			continue
		}
		l := get(c.PipelineID)
		if c.Type == OpOK {
			l.InitInv, l.InitOK = inv, c
			l.Present = append(l.Present, evidence{inv.Time, c, "init answered ok"})
			continue
		}
		l.FailedInit = c
		l.Gone = append(l.Gone, evidence{c.Time + int64(CrashDetectionBound+b.Epsilon), c,
			fmt.Sprintf("init answered %s", errorTypeOr(c))})
		l.Causes = append(l.Causes, window{inv.Time, never, "its init failed", c, causeInit})
	}
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !isClientProcess(inv.Process) {
			continue
		}
		c := f.v.completion(inv)
		switch {
		case inv.F == protocol.TypeListPipelines:
			if c != nil && c.Type == OpOK {
				f.lists = append(f.lists, listObs{Lo: inv.Time, Hi: c.Time, IDs: stringSet(valueFields(c.Value)["pipelines"]), Op: c})
			}
			continue
		case inv.PipelineID == "" || (inv.F != protocol.TypeTerminate && !slices.Contains(pipelineCommands, inv.F)):
			continue
		}
		l := get(inv.PipelineID)
		if inv.F == protocol.TypeTerminate {
			l.Causes = append(l.Causes, window{inv.Time, never, "terminate was sent", inv, causeTerminate})
		}
		switch {
		case c == nil:
			l.Causes = append(l.Causes, window{inv.Time, never, "a command got no answer", inv, causeManager})
		case c.Type == OpOK:
			l.Present = append(l.Present, evidence{inv.Time, c, inv.F + " answered ok"})
			if inv.F == protocol.TypeTerminate {
				l.Gone = append(l.Gone, evidence{c.Time, c, "terminate answered ok"})
			}
			if inv.F == protocol.TypeStatus && reportEnded(valueFields(c.Value)) {
				l.Causes = append(l.Causes, window{inv.Time, never, "its source ended", c, causeExit})
			}
		case opErrorType(c) == protocol.ErrTypeNotFound:
			l.Gone = append(l.Gone, evidence{c.Time, c, "answered not_found"})
		case outcomeOf(c) == outUnknown:
			// The manager failed a command: health failures count, and it
			// may remove the pipeline within the removal bound.
			l.Causes = append(l.Causes, window{inv.Time, addTo(c.Time, removal), "the manager answered " + errorTypeOr(c), c, causeManager})
		}
	}
	// Faults on a pipeline: it may leave from the injection until the
	// removal bound after the fault ends.
	for _, w := range nemesisFaults(d) {
		if w.Fault == nil {
			f.unknownFaults = append(f.unknownFaults, unknownFault(w))
		}
		if w.PipelineID == "" {
			if w.Fault == nil || w.Fault.EndsManager() {
				f.global = append(f.global, window{w.Invoke.Time, never, "fault " + w.F, w.Invoke, causeFault})
			}
			continue
		}
		l := get(w.PipelineID)
		l.Causes = append(l.Causes, window{w.Invoke.Time, addTo(faultEnd(w), removal), "fault " + w.F, w.Invoke, causeFault})
	}
	if d.Shutdown.Signal != "" {
		f.global = append(f.global, window{d.Shutdown.Requested, never, "the manager's " + d.Shutdown.Signal, nil, causeShutdown})
	}
	// The manager's own view: a pipeline leaving or failing health checks
	// may go; sampled lists are lists too.
	for si := range d.Inspects {
		s := &d.Inspects[si]
		for pi := range s.Pipelines {
			p := &s.Pipelines[pi]
			if p.Pid > 0 && f.pids[p.PipelineID] != p.Pid {
				if f.pids[p.PipelineID] == 0 {
					f.owners[p.Pid]++
				}
				f.pids[p.PipelineID] = p.Pid
			}
			if leaving(p) || p.Health.ConsecutiveFailures > 0 {
				l := get(p.PipelineID)
				l.Causes = append(l.Causes, window{s.Time - int64(samplerSpan), s.Time + int64(removal),
					fmt.Sprintf("inspect at %s shows it %s with %d health failures", secs(s.Time), entryState(p), p.Health.ConsecutiveFailures), nil, causeManager})
			}
		}
		if s.Listed != nil {
			ids := map[string]bool{}
			for _, id := range s.Listed {
				ids[id] = true
			}
			f.lists = append(f.lists, listObs{Lo: s.Time - int64(samplerSpan), Hi: s.Time, IDs: ids,
				Source: "the list_pipelines of the inspect sample at " + secs(s.Time)})
		}
	}
	// Targets without inspect: the polls' lists and statuses, sent one
	// after the other from the poll's time, each within pollTimeout.
	for _, s := range d.Polls {
		if s.Listed != nil {
			f.lists = append(f.lists, listObs{Lo: s.Time, Hi: s.Time + int64(pollTimeout), IDs: stringSet(s.Listed),
				Source: "the list_pipelines poll at " + secs(s.Time)})
		}
		for i, st := range s.Status {
			switch {
			case st.OK:
				l := get(st.PipelineID)
				l.Present = append(l.Present, evidence{s.Time, nil, "answered ok to the status poll at " + secs(s.Time)})
			case st.ErrorType == protocol.ErrTypeNotFound:
				l := get(st.PipelineID)
				l.Gone = append(l.Gone, evidence{s.Time + int64(i+2)*int64(pollTimeout), nil, "answered not_found to the status poll at " + secs(s.Time)})
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(d.WorkerPids)) {
		if pid := d.WorkerPids[id]; pid > 0 && f.pids[id] == 0 {
			f.pids[id] = pid
			f.owners[pid]++
		}
	}
	// A worker the census saw alive and then no more: its pipeline may go.
	for _, id := range slices.Sorted(maps.Keys(f.pids)) {
		pid := f.pids[id]
		if t, ok := lastAlive(d.Census, pid); ok && t < lastCensus(d.Census) {
			l := get(id)
			l.Causes = append(l.Causes, window{t, never, fmt.Sprintf("its worker pid %d was last seen alive at %s", pid, secs(t)), nil, causeExit})
		}
	}
	// Lists: presence for the ids they name, absence for the ids they
	// lack that existed before the list was sent (only the earliest
	// absence counts, so one is kept per pipeline).
	missing := map[string]*listObs{}
	for i := range f.lists {
		lst := &f.lists[i]
		for id := range lst.IDs {
			if l, ok := f.lives[id]; ok {
				l.Present = append(l.Present, evidence{lst.Lo, lst.Op, "listed by " + lst.describe()})
			}
		}
		for _, id := range f.ids {
			l := f.lives[id]
			if lst.IDs[id] || l.InitOK == nil || lst.Lo <= l.InitOK.Time {
				continue
			}
			if m := missing[id]; m == nil || lst.Hi < m.Hi {
				missing[id] = lst
			}
		}
	}
	for _, id := range f.ids {
		if lst := missing[id]; lst != nil {
			l := f.lives[id]
			l.Gone = append(l.Gone, evidence{lst.Hi, lst.Op, "not listed by " + lst.describe()})
		}
	}
	return f
}

func errorTypeOr(c *Op) string {
	if t := opErrorType(c); t != "" {
		return t
	}
	if c.Type == OpInfo {
		return "nothing (" + c.Error + ")"
	}
	return c.Type
}

// stringSet reads a JSON list of strings.
func stringSet(v any) map[string]bool {
	out := map[string]bool{}
	if xs, ok := v.([]any); ok {
		for _, x := range xs {
			if s, ok := x.(string); ok {
				out[s] = true
			}
		}
	}
	if xs, ok := v.([]string); ok {
		for _, s := range xs {
			out[s] = true
		}
	}
	return out
}

// lastAlive returns the time of the last census sample showing pid alive.
func lastAlive(census []CensusSample, pid int) (int64, bool) {
	for i := len(census) - 1; i >= 0; i-- {
		for _, p := range census[i].Procs {
			if p.Pid == pid && !p.Zombie() {
				return census[i].Time, true
			}
		}
	}
	return 0, false
}

func lastCensus(census []CensusSample) int64 {
	if len(census) == 0 {
		return 0
	}
	return census[len(census)-1].Time
}

// causesOf returns a pipeline's causes plus the global ones.
func (f *facts) causesOf(l *life) []window {
	return append(slices.Clone(l.Causes), f.global...)
}
