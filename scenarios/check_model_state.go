package scenarios

import (
	"fmt"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// The mute/resume state machine of one pipeline: running (after init or
// resume) and muted (after mute). Each command takes effect at one moment
// between its invoke and its answer; a command whose outcome is unknown
// (info, or an operation_error such as a timeout, after which the worker
// may still run it) may take effect at any moment after its invoke, until
// a later command to the same pipeline, sent after that outcome, is
// answered ok (a pipeline's commands reach its worker in order, so the
// lost one came first or never). As in Jepsen's checkers for crashed ops,
// the model keeps the set of states possible at each moment, updated in
// one pass over the history.
const (
	kindRunning = iota
	kindMuted
	kinds
)

var kindNames = [kinds]string{"running", "muted"}

// stateSet is a set of possible states (bit k = kind k).
type stateSet uint8

func (s stateSet) has(k int) bool { return s&(1<<k) != 0 }

func (s stateSet) String() string {
	var out []string
	for k := range kinds {
		if s.has(k) {
			out = append(out, kindNames[k])
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " or ")
}

// Source states of the upstream status report (sources_metadata[].state),
// as the reference worker reports them; PAUSED is upstream's other name for
// a parked stream. Others (NOT_STARTED, INITIALISING, RESTARTING, ENDED,
// ERROR, TERMINATING) are not judged against mute and resume.
var reportKinds = map[string]int{"RUNNING": kindRunning, "MUTED": kindMuted, "PAUSED": kindMuted}

// pendingOp is a command of unknown outcome waiting to be resolved.
type pendingOp struct {
	kind int
	inv  *Op
	end  int64 // its (failed) answer
}

// machine is one pipeline's model state.
type machine struct {
	has      [kinds]bool
	lastEnd  [kinds]int64 // answer time of the latest command of each kind known to have taken effect
	lastOp   [kinds]*Op
	killed   [kinds]bool // a command of the other kind, sent after lastEnd, took effect since
	killer   [kinds]*Op
	inflight [kinds]int // commands of each kind that may still take effect
	pending  []pendingOp
	watching map[int]stateSet // status and consume invokes -> states possible since
	changes  []stateChange
}

// stateChange records the possible states from At on.
type stateChange struct {
	At  int64
	Set stateSet
}

func (m *machine) possible() stateSet {
	var s stateSet
	for k := range kinds {
		if m.inflight[k] > 0 || (m.has[k] && !m.killed[k]) {
			s |= 1 << k
		}
	}
	return s
}

func (m *machine) record(at int64) {
	s := m.possible()
	if n := len(m.changes); n > 0 && m.changes[n-1].Set == s {
		return
	}
	m.changes = append(m.changes, stateChange{at, s})
}

// took records that a command of kind k took effect between inv and end.
func (m *machine) took(k int, inv int64, end int64, op *Op) {
	for j := range kinds {
		if j != k && m.has[j] && inv > m.lastEnd[j] {
			m.killed[j], m.killer[j] = true, op
		}
	}
	m.has[k] = true
	if end >= m.lastEnd[k] {
		m.lastEnd[k], m.lastOp[k] = end, op
	}
	m.killed[k] = false
}

// resolve settles the pending commands answered before inv: a command to
// the same pipeline sent after them was answered ok, so each took effect
// before effectiveEnd or never.
func (m *machine) resolve(inv int64, effectiveEnd int64) {
	keep := m.pending[:0]
	for _, p := range m.pending {
		if p.end >= inv {
			keep = append(keep, p)
			continue
		}
		m.inflight[p.kind]--
		m.has[p.kind] = true
		if effectiveEnd >= m.lastEnd[p.kind] {
			m.lastEnd[p.kind], m.lastOp[p.kind] = effectiveEnd, p.inv
		}
		m.killed[p.kind] = false
	}
	m.pending = keep
}

// at returns the states possible at t (an empty set before the model
// starts).
func (m *machine) at(t int64) stateSet {
	var s stateSet
	for _, c := range m.changes {
		if c.At > t {
			break
		}
		s = c.Set
	}
	return s
}

// definitelyMuted reports whether only muted was possible throughout
// [from, to].
func (m *machine) definitelyMuted(from, to int64) bool {
	if m.at(from) != 1<<kindMuted {
		return false
	}
	for _, c := range m.changes {
		if c.At > from && c.At <= to && c.Set != 1<<kindMuted {
			return false
		}
	}
	return true
}

// reportStates returns the source states of a status answer.
func reportStates(value map[string]any) []string {
	report, _ := value["report"].(map[string]any)
	srcs, _ := report["sources_metadata"].([]any)
	var out []string
	for _, s := range srcs {
		if m, ok := s.(map[string]any); ok {
			if st, ok := m["state"].(string); ok {
				out = append(out, st)
			}
		}
	}
	return out
}

// reportEnded reports whether a status answer shows a source that ended
// or failed (the manager may then remove the pipeline).
func reportEnded(value map[string]any) bool {
	for _, s := range reportStates(value) {
		if s == "ENDED" || s == "ERROR" {
			return true
		}
	}
	return false
}

// frameOf is one frames_metadata element.
type frameOf struct {
	ID        int64
	Stamp     string
	At        int64 // capture time in ns since the run's start; 0 if unknown
	HasAt     bool
	HasNumber bool
}

func framesOf(value map[string]any, start time.Time, clock bool) []frameOf {
	md, _ := value["frames_metadata"].([]any)
	var out []frameOf
	for _, x := range md {
		m, _ := x.(map[string]any)
		fr := frameOf{}
		if id, ok := numberField(m, "frame_id"); ok {
			fr.ID, fr.HasNumber = int64(id), true
		}
		fr.Stamp, _ = m["frame_timestamp"].(string)
		if clock && fr.Stamp != "" {
			if t, ok := parseStamp(fr.Stamp); ok {
				fr.At, fr.HasAt = int64(t.Sub(start)), true
			}
		}
		out = append(out, fr)
	}
	return out
}

// parseStamp reads a frame timestamp: RFC 3339 with a zone (the reference
// worker), or a naive local ISO-8601 time (upstream).
func parseStamp(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.Local); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// consumeSeen is one frame a consume_result returned.
type consumeSeen struct {
	pipeline string
	op       *Op
}

// judgeStates runs the state machine of every pipeline over the history
// and judges status reports (states) and consume_result answers (frames).
func (f *facts) judgeStates() (states, consumes []string) {
	d := f.d
	f.refusable = map[int]bool{}
	eps := int64(d.Bounds.Epsilon)
	// Frame capture times are comparable with the history only when the
	// workers share the harness's clock.
	clock := d.Embedded && !d.Start.IsZero()
	machines := map[string]*machine{}
	// Per pipeline: the highest frame id of the consumes answered so far,
	// and every frame id returned.
	type high struct {
		id int64
		op *Op
	}
	done := map[string]high{}
	sentAfter := map[int]high{} // consume invoke -> the high mark when it was sent
	frames := map[string]map[int64]*Op{}
	stamps := map[string]consumeSeen{} // stamp + id -> first consume that returned it
	// drained: per pipeline, an empty consume_result sent at least
	// drainWindow after a mute took effect (the frames in flight at the
	// mute have reached the buffer by then).
	drained := map[string]*Op{}
	drainWindow := 2 * eps
	// quiet returns whether no fault window on id covers [from, to].
	quiet := func(id string, from, to int64) bool {
		l := f.lives[id]
		if l == nil {
			return true
		}
		for _, w := range f.causesOf(l) {
			if w.Kind == causeFault && w.From <= to && w.To >= from {
				return false
			}
		}
		return true
	}
	for i := range d.Ops {
		o := &d.Ops[i]
		if !isClientProcess(o.Process) {
			continue
		}
		if o.Type == OpInvoke {
			m := machines[o.PipelineID]
			switch {
			case m == nil:
			case o.F == protocol.TypeMute || o.F == protocol.TypeResume:
				k := kindOf(o.F)
				m.watching[o.Index] = m.possible()
				m.inflight[k]++
				for idx := range m.watching {
					if idx != o.Index {
						m.watching[idx] |= 1 << k
					}
				}
				m.record(o.Time)
			case o.F == protocol.TypeStatus:
				m.watching[o.Index] = m.possible()
			}
			if o.F == protocol.TypeConsumeResult {
				sentAfter[o.Index] = done[o.PipelineID]
			}
			continue
		}
		inv := f.v.byIdx[o.Invoke]
		if inv == nil {
			continue
		}
		if o.F == protocol.TypeInit {
			if o.Type == OpOK && o.PipelineID != "" {
				m := &machine{watching: map[int]stateSet{}}
				m.took(kindRunning, inv.Time, o.Time, o)
				m.record(o.Time)
				machines[o.PipelineID] = m
			}
			continue
		}
		m := machines[o.PipelineID]
		if m == nil {
			continue
		}
		switch o.F {
		case protocol.TypeMute, protocol.TypeResume:
			k := kindOf(o.F)
			// The protocol lets a worker refuse a mute of a muted stream
			// and a resume of a running one (operation_error).
			if set := m.watching[inv.Index]; o.Type == OpFail && set.has(k) {
				f.refusable[inv.Index] = true
			}
			delete(m.watching, inv.Index)
			switch outcomeOf(o) {
			case outOK:
				m.resolve(inv.Time, inv.Time-1)
				m.inflight[k]--
				m.took(k, inv.Time, o.Time, o)
			case outNoEffect:
				m.inflight[k]--
			default:
				m.pending = append(m.pending, pendingOp{k, inv, o.Time})
			}
		case protocol.TypeStatus:
			set, watched := m.watching[inv.Index]
			delete(m.watching, inv.Index)
			if o.Type != OpOK {
				break
			}
			if watched && quiet(o.PipelineID, inv.Time, o.Time) {
				for _, st := range reportStates(valueFields(o.Value)) {
					k, judged := reportKinds[st]
					if !judged || set.has(k) {
						continue
					}
					states = append(states, fmt.Sprintf("pipeline %s: op %d (status sent at %s) reports %s, but the model allows only %s: %s",
						o.PipelineID, o.Index, secs(inv.Time), st, set, m.why(k)))
					break
				}
			}
			m.resolve(inv.Time, o.Time)
		case protocol.TypeConsumeResult:
			if o.Type != OpOK {
				break
			}
			m.resolve(inv.Time, o.Time)
			id := o.PipelineID
			if frames[id] == nil {
				frames[id] = map[int64]*Op{}
			}
			before := sentAfter[inv.Index]
			var prev *frameOf
			for _, fr := range framesOf(valueFields(o.Value), d.Start, clock) {
				where := fmt.Sprintf("pipeline %s: op %d (consume_result sent at %s) returned frame %d", id, o.Index, secs(inv.Time), fr.ID)
				switch {
				case !fr.HasNumber:
				case before.op != nil && fr.ID <= before.id:
					consumes = append(consumes, fmt.Sprintf("%s, not after frame %d that op %d returned before it was sent (frame ids go backwards or repeat)",
						where, before.id, before.op.Index))
				case prev != nil && fr.ID <= prev.ID:
					consumes = append(consumes, fmt.Sprintf("%s after frame %d in the same answer (frame ids go backwards)", where, prev.ID))
				case frames[id][fr.ID] != nil:
					consumes = append(consumes, fmt.Sprintf("%s, already returned by op %d (a frame is consumed once)", where, frames[id][fr.ID].Index))
				}
				if fr.HasNumber && frames[id][fr.ID] == nil {
					frames[id][fr.ID] = o
				}
				if fr.Stamp != "" {
					key := fmt.Sprintf("%s#%d", fr.Stamp, fr.ID)
					if seen, ok := stamps[key]; ok && seen.pipeline != id {
						consumes = append(consumes, fmt.Sprintf("%s (captured %s), which op %d returned for pipeline %s: it belongs to another pipeline",
							where, fr.Stamp, seen.op.Index, seen.pipeline))
					} else if !ok {
						stamps[key] = consumeSeen{id, o}
					}
				}
				if fr.HasAt {
					l := f.lives[id]
					switch {
					case l != nil && l.InitInv != nil && fr.At < l.InitInv.Time-eps:
						consumes = append(consumes, fmt.Sprintf("%s captured at %s, before its init was sent (op %d at %s): it belongs to another pipeline",
							where, secs(fr.At), l.InitInv.Index, secs(l.InitInv.Time)))
					case fr.At > o.Time+eps:
						consumes = append(consumes, fmt.Sprintf("%s captured at %s, after the answer came (%s)", where, secs(fr.At), secs(o.Time)))
					case quiet(id, fr.At-eps, fr.At+eps) && m.definitelyMuted(fr.At-eps, fr.At+eps):
						consumes = append(consumes, fmt.Sprintf("%s captured at %s while the pipeline was muted: %s",
							where, secs(fr.At), m.why(kindRunning)))
					}
				}
				fr := fr
				prev = &fr
			}
			if prev != nil && prev.HasNumber && prev.ID > done[id].id {
				done[id] = high{prev.ID, o}
			}
			// Without a shared clock: once a muted pipeline's buffer was
			// found empty, nothing new may reach it until a resume.
			e := drained[id]
			switch {
			case prev == nil && quiet(id, inv.Time-drainWindow, o.Time) && m.definitelyMuted(inv.Time-drainWindow, o.Time):
				if e == nil || !m.definitelyMuted(f.v.byIdx[e.Invoke].Time-drainWindow, inv.Time) {
					drained[id] = o
				}
			case prev != nil && e != nil:
				if einv := f.v.byIdx[e.Invoke]; quiet(id, einv.Time, o.Time) && m.definitelyMuted(einv.Time-drainWindow, o.Time) {
					consumes = append(consumes, fmt.Sprintf("pipeline %s: op %d (consume_result sent at %s) returned frame %d while the pipeline was muted and op %d had found its buffer empty: %s",
						id, o.Index, secs(inv.Time), prev.ID, e.Index, m.why(kindRunning)))
				}
				delete(drained, id)
			}
		}
		m.record(o.Time)
	}
	return states, consumes
}

func kindOf(f string) int {
	if f == protocol.TypeMute {
		return kindMuted
	}
	return kindRunning
}

// why explains why kind k is not possible: the command of the other kind
// that took effect after the last command of kind k.
func (m *machine) why(k int) string {
	other := kindRunning
	if k == kindRunning {
		other = kindMuted
	}
	switch {
	case !m.has[k] && m.inflight[k] == 0:
		return fmt.Sprintf("no %s was ever sent", commandOfKind(k))
	case m.killed[k] && m.killer[k] != nil && m.lastOp[k] != nil:
		return fmt.Sprintf("op %d (%s) was answered after op %d (%s, answered %s) with no %s in flight",
			m.killer[k].Index, commandOfKind(other), m.lastOp[k].Index, m.lastOp[k].F, secs(m.lastEnd[k]), commandOfKind(k))
	}
	return fmt.Sprintf("possible states %s", m.possible())
}

func commandOfKind(k int) string {
	if k == kindMuted {
		return protocol.TypeMute
	}
	return protocol.TypeResume
}
