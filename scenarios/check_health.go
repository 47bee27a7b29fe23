package scenarios

import (
	"fmt"
	"strings"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

// HangBound is how long a hung worker may stay in the table unmarked: the
// first probe may come after a stretched interval (2x), then each of the
// MaxHealthFailures failures costs a timeout and an interval.
func HangBound(b Bounds) time.Duration {
	return 2*b.HealthInterval + time.Duration(b.MaxHealthFailures)*(b.HealthTimeout+b.HealthInterval) + b.Epsilon
}

// findEntry returns pipeline id's entry in a sample, or nil.
func findEntry(s *InspectSample, id string) *protocol.PipelineInfo {
	for i := range s.Pipelines {
		if s.Pipelines[i].PipelineID == id {
			return &s.Pipelines[i]
		}
	}
	return nil
}

// findPid returns the entry whose worker has pid, or nil.
func findPid(s *InspectSample, pid int) *protocol.PipelineInfo {
	for i := range s.Pipelines {
		if s.Pipelines[i].Pid == pid {
			return &s.Pipelines[i]
		}
	}
	return nil
}

// leaving reports whether an entry is on its way out of the table.
func leaving(p *protocol.PipelineInfo) bool {
	return p == nil || p.MarkedForRemoval || p.State == protocol.StateTerminating || p.State == protocol.StateFailed
}

// faultPid is the worker pid a fault's observation names, or 0.
func faultPid(w faultWindow) int {
	f, _ := numberField(w.Observed, "pid")
	return int(f)
}

// deadPids returns, for each worker pid the run knows to be dead, the
// earliest time it was known dead and how: a crash op of the nemesis (when
// crashOps), or a census in which the pid, seen alive before, is missing
// or a zombie from then on (a single missing sample is not trusted).
func deadPids(d *RunData, crashOps bool) map[int]struct {
	at  int64
	how string
} {
	type death = struct {
		at  int64
		how string
	}
	out := map[int]death{}
	note := func(pid int, at int64, how string) {
		if old, ok := out[pid]; !ok || at < old.at {
			out[pid] = death{at, how}
		}
	}
	for _, w := range nemesisFaults(d) {
		if crashOps && w.Fault != nil && w.Fault.Kills() && w.OK != nil {
			if pid := faultPid(w); pid > 0 {
				note(pid, w.Start, fmt.Sprintf("crashed by op %d", w.OK.Index))
			}
		}
	}
	alive := func(s CensusSample, pid int) bool {
		for _, p := range s.Procs {
			if p.Pid == pid && !p.Zombie() {
				return true
			}
		}
		return false
	}
	seen := map[int]bool{}
	for _, s := range d.Census {
		for _, p := range s.Procs {
			if !p.Zombie() {
				seen[p.Pid] = true
			}
		}
	}
	for pid := range seen {
		last := -1 // the last census that saw it alive
		for i, s := range d.Census {
			if alive(s, pid) {
				last = i
			}
		}
		if last >= 0 && last+1 < len(d.Census) {
			s := d.Census[last+1]
			at := max(s.Time, s.End) // dead by the census's end
			note(pid, at, fmt.Sprintf("missing from the census at %s", secs(at)))
		}
	}
	return out
}

// checkConsistentHealth: the manager's table and health records agree
// with each other, with list_pipelines and with the processes.
func checkConsistentHealth(d *RunData) Result {
	if len(d.Inspects) == 0 {
		if len(d.Polls) > 0 {
			return checkConsistentHealthPolls(d)
		}
		return Result{Verdict: Unknown, Summary: "no inspect samples and no list/status polls were taken"}
	}
	b := d.Bounds
	var details []string
	add := func(s *InspectSample, format string, args ...any) {
		details = append(details, fmt.Sprintf("inspect at %s: ", secs(s.Time))+fmt.Sprintf(format, args...))
	}
	dead := deadPids(d, true)
	detect := int64(b.crashBound() + b.Epsilon)

	// Pipelines a client terminated: their entry must go with them.
	terminated := map[string]*Op{}
	v := newOpView(d.Ops)
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type == OpInvoke && inv.F == protocol.TypeTerminate && isClientProcess(inv.Process) {
			if c := v.completion(inv); c != nil && c.Type == OpOK && c.PipelineID != "" {
				if _, ok := terminated[c.PipelineID]; !ok {
					terminated[c.PipelineID] = c
				}
			}
		}
	}

	markedAt := map[string]int64{}
	prev := map[string]*protocol.PipelineInfo{}
	mismatch := map[string]int{} // consecutive samples a list discrepancy lasted
	overdue := map[string]int{}  // consecutive samples with too many failures, unmarked
	for si := range d.Inspects {
		s := &d.Inspects[si]
		listed := map[string]bool{}
		for _, id := range s.Listed {
			listed[id] = true
		}
		present := map[string]bool{}
		for pi := range s.Pipelines {
			p := &s.Pipelines[pi]
			h := p.Health
			present[p.PipelineID] = true
			if h.ProbeInterval <= 0 {
				add(s, "pipeline %s (%s) has no health record (probe interval %v)", p.PipelineID, p.State, h.ProbeInterval)
			}
			// The health loop records the last failure and then marks the
			// pipeline: one sample may fall in between, two may not.
			if b.MaxHealthFailures > 0 && h.ConsecutiveFailures >= b.MaxHealthFailures && !p.MarkedForRemoval {
				overdue[p.PipelineID]++
				if overdue[p.PipelineID] == 2 {
					add(s, "pipeline %s has %d consecutive failures (max %d) but is not marked for removal",
						p.PipelineID, h.ConsecutiveFailures, b.MaxHealthFailures)
				}
			} else {
				overdue[p.PipelineID] = 0
			}
			if old := prev[p.PipelineID]; h.LastProbe != nil && h.LastError == "" && h.ConsecutiveFailures > 0 &&
				(old == nil || old.Health.LastProbe == nil || h.LastProbe.After(*old.Health.LastProbe)) {
				add(s, "pipeline %s: probe at %s succeeded but %d failures were not reset",
					p.PipelineID, h.LastProbe.Format(time.RFC3339Nano), h.ConsecutiveFailures)
			}
			if death, ok := dead[p.Pid]; ok && p.Pid > 0 && s.Time > death.at+detect {
				add(s, "pipeline %s still has pid %d, dead for %v (%s), bound %v", p.PipelineID, p.Pid,
					time.Duration(s.Time-death.at).Round(time.Millisecond), death.how, b.crashBound()+b.Epsilon)
			}
			if t, ok := terminated[p.PipelineID]; ok && s.Time > t.Time+detect {
				add(s, "pipeline %s is still in the table %v after its terminate was answered ok (op %d)",
					p.PipelineID, time.Duration(s.Time-t.Time).Round(time.Millisecond), t.Index)
			}
			if p.MarkedForRemoval {
				if _, ok := markedAt[p.PipelineID]; !ok {
					markedAt[p.PipelineID] = s.Time
				}
			}
			// list_pipelines and inspect are two requests: a pipeline
			// changing state between them may differ once, not twice.
			transitional := p.State == protocol.StateStarting || p.State == protocol.StateTerminating || p.MarkedForRemoval
			if !p.Idle && !listed[p.PipelineID] && !transitional {
				mismatch[p.PipelineID]++
				if mismatch[p.PipelineID] == 2 {
					add(s, "pipeline %s (%s) is in the table but list_pipelines does not show it", p.PipelineID, p.State)
				}
			} else if p.Idle && listed[p.PipelineID] {
				mismatch[p.PipelineID]++
				if mismatch[p.PipelineID] == 2 {
					add(s, "idle worker %s is listed by list_pipelines", p.PipelineID)
				}
			} else {
				mismatch[p.PipelineID] = 0
			}
		}
		for _, id := range s.Listed {
			if !present[id] {
				mismatch[id]++
				if mismatch[id] == 2 {
					add(s, "list_pipelines shows %s, which is not in the table", id)
				}
			}
		}
		for id := range mismatch {
			if !present[id] && !listed[id] {
				mismatch[id] = 0
			}
		}
		prev = map[string]*protocol.PipelineInfo{}
		for pi := range s.Pipelines {
			prev[s.Pipelines[pi].PipelineID] = &s.Pipelines[pi]
		}
	}

	// A pipeline marked for removal lets no new command through.
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !isClientProcess(inv.Process) || !protocol.ForwardedToWorker(inv.F) {
			continue
		}
		t, ok := markedAt[inv.PipelineID]
		if !ok || inv.Time <= t+int64(b.Epsilon) {
			continue
		}
		if c := v.completion(inv); c != nil && c.Type == OpOK {
			details = append(details, fmt.Sprintf("%s: answered ok by op %d, but the pipeline was marked for removal at %s",
				describeOp(inv), c.Index, secs(t)))
		}
	}
	if len(details) == 0 {
		// A fault whose effect is unknown may have killed a worker that
		// the table still lists: the agreement proves nothing then.
		for _, w := range nemesisFaults(d) {
			if w.OK != nil && w.Fault == nil {
				return Result{Verdict: Unknown, Summary: describeOp(w.OK) + ": " + unknownFault(w)}
			}
		}
		return Result{Verdict: Valid, Summary: fmt.Sprintf("table, health records, list and processes agree in %d samples", len(d.Inspects))}
	}
	return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d inconsistencies in the manager's health state", len(details)),
		Details: capDetails(details)}
}

// checkCrashDetected: each crashed worker leaves the table within the
// crash-detection bound + epsilon. Without inspect, the crashed pipeline's
// id must leave list_pipelines, or its status must report a failure,
// within the same bound.
func checkCrashDetected(d *RunData) Result {
	bound := d.Bounds.crashBound() + d.Bounds.Epsilon
	polls := len(d.Inspects) == 0 && len(d.Polls) > 0
	var details, unknown []string
	n := 0
	for _, w := range nemesisFaults(d) {
		if w.OK == nil {
			continue
		}
		if w.Fault == nil {
			unknown = append(unknown, describeOp(w.OK)+": "+unknownFault(w))
			continue
		}
		if !w.Fault.Kills() {
			continue
		}
		n++
		pid := faultPid(w)
		verdict, when := detectedGone(d, w, int64(bound), polls, func(s *InspectSample) bool {
			if pid > 0 {
				return findPid(s, pid) == nil
			}
			return findEntry(s, w.PipelineID) == nil
		})
		switch {
		case verdict == Invalid && polls:
			details = append(details, fmt.Sprintf("%s: %s (pid %d) still listed with a healthy status at %s, %v after the crash (bound %v)",
				describeOp(w.OK), w.PipelineID, pid, secs(when), time.Duration(when-w.Start).Round(time.Millisecond), bound))
		case verdict == Invalid:
			details = append(details, fmt.Sprintf("%s: pid %d of %s still in the table at %s, %v after the crash (bound %v)",
				describeOp(w.OK), pid, w.PipelineID, secs(when), time.Duration(when-w.Start).Round(time.Millisecond), bound))
		case verdict == Unknown:
			unknown = append(unknown, fmt.Sprintf("%s: no sample of the manager's view within %v of the crash", describeOp(w.OK), bound))
		}
	}
	return withObservables(detectionResult(n, "crash", bound, details, unknown), polls)
}

// detectedGone decides whether the manager let w's pipeline go within
// bound: from inspect samples by gone, or, with polls, by its id leaving
// list_pipelines or its status reporting a failure (an unanswered status
// is no detection: the manager must say so).
func detectedGone(d *RunData, w faultWindow, bound int64, polls bool, gone func(*InspectSample) bool) (string, int64) {
	if polls {
		return detectedBySightings(d, w.Start, bound, w.PipelineID)
	}
	return detectedBy(d, w.Start, bound, gone)
}

// withObservables says in a poll-judged result what it was judged from.
func withObservables(r Result, polls bool) Result {
	if polls {
		r.Summary += " (" + pollObservables + ")"
	}
	return r
}

// unknownFault says why a fault that fired cannot be judged.
func unknownFault(w faultWindow) string {
	return fmt.Sprintf("fault %q is not in the fault catalogue; its effect cannot be judged", w.F)
}

// detectedBy decides whether cond came true within bound of t0 from the
// inspect samples: valid when a sample in (t0, t0+bound] shows it, invalid
// when a later sample still does not, unknown when no sample decides.
func detectedBy(d *RunData, t0, bound int64, cond func(*InspectSample) bool) (string, int64) {
	for i := range d.Inspects {
		s := &d.Inspects[i]
		if s.Time < t0 {
			continue
		}
		if s.Time <= t0+bound {
			if cond(s) {
				return Valid, s.Time
			}
			continue
		}
		if cond(s) {
			return Unknown, s.Time
		}
		return Invalid, s.Time
	}
	return Unknown, 0
}

func detectionResult(n int, what string, bound time.Duration, details, unknown []string) Result {
	plural := what + "s"
	if strings.HasSuffix(what, "sh") {
		plural = what + "es"
	}
	switch {
	case len(details) > 0:
		return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d of %d %s not detected within %v", len(details), n, plural, bound),
			Details: capDetails(append(details, unknown...))}
	case len(unknown) > 0:
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("%d of %d %s could not be judged", len(unknown), n, plural),
			Details: capDetails(unknown)}
	case n == 0:
		return Result{Verdict: Valid, Summary: fmt.Sprintf("no %s in this run needed detection (none, or all shorter than %v)", what, bound)}
	}
	return Result{Verdict: Valid, Summary: fmt.Sprintf("all %d %s detected within %v", n, plural, bound)}
}

// checkHangDetected: a hang that lasts longer than HangBound is caught
// (the pipeline is marked for removal or gone) within HangBound; a
// slow_probe below the probe timeout never gets its pipeline removed.
func checkHangDetected(d *RunData) Result {
	b := d.Bounds
	bound := HangBound(b)
	end := runEnd(d)
	faults := nemesisFaults(d)
	polls := len(d.Inspects) == 0 && len(d.Polls) > 0
	var details, unknown []string
	n := 0
	for _, w := range faults {
		if w.OK == nil {
			continue
		}
		if w.Fault == nil {
			unknown = append(unknown, describeOp(w.OK)+": "+unknownFault(w))
			continue
		}
		wEnd := w.End
		if wEnd < 0 {
			wEnd = end
		}
		delay, hasDelay := paramField(w.Observed, "delay_seconds")
		if !hasDelay {
			delay, hasDelay = paramField(valueFields(w.Invoke.Value), "delay_seconds")
		}
		slowBelow := w.Fault.SlowsProbes() && hasDelay && delay < b.HealthTimeout.Seconds()
		slowAbove := w.Fault.SlowsProbes() && hasDelay && delay > b.HealthTimeout.Seconds()
		switch {
		case slowBelow:
			if other := removalCause(d, faults, w, wEnd); other != "" {
				continue // something else removed it; nothing to judge
			}
			for i := range d.Inspects {
				s := &d.Inspects[i]
				if s.Time <= w.Start || s.Time > wEnd {
					continue
				}
				if p := findEntry(s, w.PipelineID); leaving(p) {
					details = append(details, fmt.Sprintf("%s: slow but healthy worker (probe delay %.3gs < timeout %v) was removed: %s at %s",
						describeOp(w.OK), delay, b.HealthTimeout, entryState(p), secs(s.Time)))
					break
				}
			}
		case w.Fault.Hangs() || slowAbove || stallsSources(w.Fault) && b.SourceStall > 0:
			bound := bound
			if stallsSources(w.Fault) {
				// The watchdog reports the stall within its timeout
				// (plus its quarter-timeout tick); from then on every
				// probe fails, as for a hang.
				bound += b.SourceStall + b.SourceStall/4
			}
			if time.Duration(wEnd-w.Start) <= bound {
				continue // too short to require detection
			}
			n++
			verdict, when := detectedGone(d, w, int64(bound), polls, func(s *InspectSample) bool {
				return leaving(findEntry(s, w.PipelineID))
			})
			switch verdict {
			case Invalid:
				details = append(details, fmt.Sprintf("%s: hung pipeline %s not marked for removal by %s, %v after the fault (bound %v)",
					describeOp(w.OK), w.PipelineID, secs(when), time.Duration(when-w.Start).Round(time.Millisecond), bound))
			case Unknown:
				unknown = append(unknown, fmt.Sprintf("%s: no sample of the manager's view within %v of the hang", describeOp(w.OK), bound))
			}
		}
	}
	return withObservables(detectionResult(n, "hang", bound, details, unknown), polls)
}

// stallsSources reports a fault whose worker answers while its sources
// deliver nothing (chaos.Stalling).
func stallsSources(f chaos.Fault) bool {
	s, ok := f.(chaos.Stalling)
	return ok && s.StallsSources()
}

func entryState(p *protocol.PipelineInfo) string {
	switch {
	case p == nil:
		return "gone from the table"
	case p.MarkedForRemoval:
		return "marked for removal"
	}
	return string(p.State)
}

// removalCause names another reason pipeline w.PipelineID may have left
// the table during w: another fault on it, a client terminate, the
// manager's shutdown. "" if none.
func removalCause(d *RunData, faults []faultWindow, w faultWindow, until int64) string {
	for _, o := range faults {
		if o.Invoke != w.Invoke && o.PipelineID == w.PipelineID && o.Start <= until && (o.End < 0 || o.End >= w.Start) &&
			(o.Fault == nil || !o.Fault.SlowsProbes() && !o.Fault.CorruptsReplies()) {
			return "fault " + o.F
		}
	}
	for i := range d.Ops {
		o := &d.Ops[i]
		if o.F == protocol.TypeTerminate && o.PipelineID == w.PipelineID && o.Time <= until {
			return "terminate"
		}
	}
	if d.Shutdown.Signal != "" && d.Shutdown.Requested <= until {
		return "shutdown"
	}
	return ""
}
