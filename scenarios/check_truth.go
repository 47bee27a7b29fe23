package scenarios

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// CheckCensusTruth names the checker that holds the manager's answers
// about its workers against the process census.
const CheckCensusTruth = "census_truth"

// Claims an answer can make about a pipeline's worker.
const (
	claimExited   = "its worker exited"      // the process is gone
	claimStopping = "it is being terminated" // the stop sequence runs
	claimRemoved  = "it does not exist"      // not_found: out of the table, so reaped
)

// claimTexts are the failure messages of the reference manager
// (manager/manager.go: callFailed, beingTerminated) that make a claim.
var claimTexts = []struct{ text, claim string }{
	{"its worker exited during", claimExited},
	{"channel to its worker broke", claimStopping},
	{"is being terminated", claimStopping},
}

// claimOf returns the claim a failed command's answer makes, or "".
func claimOf(c *Op) string {
	if c.Type != OpFail {
		return ""
	}
	if opErrorType(c) == protocol.ErrTypeNotFound {
		return claimRemoved
	}
	for _, t := range claimTexts {
		if strings.Contains(c.Error, t.text) {
			return t.claim
		}
	}
	return ""
}

// claimBound is how soon after an answer making claim the census must
// show the worker dead: at once for an exit or a removal (the manager
// reaps before it forgets), within the stop sequence for a termination.
func claimBound(claim string, b Bounds) time.Duration {
	if claim == claimStopping {
		return b.Grace + b.Join + b.Epsilon
	}
	return CrashDetectionBound + b.Epsilon
}

// HealthLoopBound is the longest a running pipeline may go without a
// probe recorded in its health record while no command to it is in
// flight (a command in flight stands in for a probe): a stretched interval
// (2x) and one probe's timeout.
func HealthLoopBound(b Bounds) time.Duration {
	return 2*b.HealthInterval + b.HealthTimeout + b.Epsilon
}

// PhantomBound is how long a pipeline whose worker lives may answer every
// command with a failure: the hang-detection bound, then the stop sequence.
func PhantomBound(b Bounds) time.Duration {
	return HangBound(b) + b.Grace + b.Join + b.Epsilon
}

// aliveIn reports whether pid is alive (not a zombie) in sample s.
func aliveIn(s *CensusSample, pid int) bool {
	for _, p := range s.Procs {
		if p.Pid == pid && !p.Zombie() {
			return true
		}
	}
	return false
}

// checkCensusTruth: what the manager says about its workers is true.
//   - An answer claiming a worker exited, is being terminated or does not
//     exist (not_found) is followed, within its bound, by a census without
//     that worker alive.
//   - A pipeline whose worker lives, with no fault, terminate or shutdown
//     on it, does not answer every command with a failure for longer than
//     the hang-detection bound while the manager shows it running, nor for
//     longer than PhantomBound at all: that is a phantom.
//   - A running pipeline's health record shows a probe at least every
//     HealthLoopBound of time without commands in flight: the health loop
//     must not stop silently.
//
// Without census samples or inspect samples (which give each pipeline's
// pid and health record) the rules cannot be judged: unknown, never valid.
func checkCensusTruth(d *RunData) Result {
	f := gatherFacts(d)
	// A target whose profile has no inspect keeps no health record the
	// harness can read: the health-loop rule does not apply to it, and
	// worker pids come from the census around each init instead.
	hasInspect := d.Profile.Name == "" || d.Profile.Has(protocol.TypeInspect)
	var missing, notes []string
	if len(d.Census) == 0 {
		missing = append(missing, "no process census was taken (claims about workers and phantoms need it)")
	}
	switch {
	case hasInspect && len(d.Inspects) == 0:
		missing = append(missing, "no inspect samples (the pid of each pipeline and its health record come from inspect)")
	case !hasInspect && len(d.WorkerPids) == 0 && f.anyInit():
		missing = append(missing, fmt.Sprintf("no worker pid is known for any pipeline (profile %s has no inspect, and the census around each init found none)", d.Profile.Name))
	}
	if hasInspect && d.Start.IsZero() && len(d.Inspects) > 0 {
		missing = append(missing, "the run's start time is unknown (health records are stamped with wall-clock times)")
	}
	if !hasInspect {
		notes = append(notes, fmt.Sprintf("profile %s keeps no health record the harness can read: the health-loop rule does not apply", d.Profile.Name))
	}
	var details []string
	claims := 0
	if len(d.Census) > 0 && len(f.pids) > 0 {
		c, ds, ns := f.judgeClaims()
		claims = c
		details = append(details, ds...)
		notes = append(notes, ns...)
		details = append(details, f.judgePhantoms()...)
	}
	if len(d.Inspects) > 0 && !d.Start.IsZero() {
		details = append(details, f.judgeHealthLoop()...)
	}
	switch {
	case len(details) > 0:
		return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d answers or health records contradict the processes", len(details)),
			Details: capDetails(append(details, missing...))}
	case len(missing) > 0 || len(f.unknownFaults) > 0:
		missing = append(missing, f.unknownFaults...)
		return Result{Verdict: Unknown, Summary: "cannot check the manager's answers against the processes: " + missing[0],
			Details: capDetails(append(missing, notes...))}
	}
	loops := "every health loop alive"
	if !hasInspect {
		loops = "health loops not observable on this target"
	}
	return Result{Verdict: Valid, Summary: fmt.Sprintf("%d claims about workers match the census; no phantom; %s", claims, loops),
		Details: capDetails(notes)}
}

// anyInit reports whether some init answered with a pipeline id.
func (f *facts) anyInit() bool {
	for _, l := range f.lives {
		if l.InitOK != nil || l.FailedInit != nil {
			return true
		}
	}
	return false
}

// pidOf returns the worker pid inspect gave id, when it gave it to no
// other pipeline (so a reused pid never stands for the wrong worker).
func (f *facts) pidOf(id string) int {
	pid := f.pids[id]
	if pid <= 0 || f.owners[pid] != 1 {
		return 0
	}
	return pid
}

// judgeClaims checks each claim against the first census after its bound;
// one detail per pipeline and claim, with the number of such answers.
func (f *facts) judgeClaims() (n int, details, notes []string) {
	d := f.d
	type key struct{ id, claim string }
	first := map[key]*Op{}
	count := map[key]int{}
	var order []key
	unjudged := 0
	for i := range d.Ops {
		c := &d.Ops[i]
		if c.Type == OpInvoke || !isClientProcess(c.Process) || c.PipelineID == "" {
			continue
		}
		claim := claimOf(c)
		if claim == "" {
			continue
		}
		pid := f.pidOf(c.PipelineID)
		if pid == 0 {
			if l := f.lives[c.PipelineID]; l != nil && l.InitOK != nil {
				unjudged++
			}
			continue
		}
		n++
		deadline := c.Time + int64(claimBound(claim, d.Bounds))
		var after *CensusSample
		for si := range d.Census {
			if d.Census[si].Time > deadline {
				after = &d.Census[si]
				break
			}
		}
		if after == nil {
			unjudged++
			continue
		}
		if !aliveIn(after, pid) {
			continue
		}
		k := key{c.PipelineID, claim}
		if first[k] == nil {
			first[k] = c
			order = append(order, k)
		}
		count[k]++
	}
	for _, k := range order {
		c := first[k]
		pid := f.pidOf(k.id)
		var seen int64
		for si := range d.Census {
			if s := &d.Census[si]; s.Time > c.Time+int64(claimBound(k.claim, d.Bounds)) && aliveIn(s, pid) {
				seen = s.Time
				break
			}
		}
		details = append(details, fmt.Sprintf("pipeline %s: op %d answered %q (%s), but its worker pid %d was alive in the census at %s, %v later (bound %v); %d such answers",
			k.id, c.Index, c.Error, k.claim, pid, secs(seen), time.Duration(seen-c.Time).Round(time.Millisecond), claimBound(k.claim, d.Bounds), count[k]))
	}
	if unjudged > 0 {
		notes = append(notes, fmt.Sprintf("%d claims could not be judged (no pid known for the pipeline, or no census after the bound)", unjudged))
	}
	return n, details, notes
}

// exempt reports whether something other than the manager explains
// failures of id during [from, to]: a fault on it (until the removal
// bound after it), a terminate, the manager's shutdown.
func (f *facts) exempt(id string, from, to int64) bool {
	l := f.lives[id]
	if l == nil {
		return false
	}
	for _, w := range f.causesOf(l) {
		switch w.Kind {
		case causeFault, causeTerminate, causeShutdown:
			if w.From <= to && w.To >= from {
				return true
			}
		}
	}
	return false
}

// judgePhantoms finds runs of failures on pipelines whose worker lives.
func (f *facts) judgePhantoms() []string {
	d := f.d
	hang, phantom := int64(HangBound(d.Bounds)), int64(PhantomBound(d.Bounds))
	var out []string
	for _, id := range f.ids {
		pid := f.pidOf(id)
		if pid == 0 {
			continue
		}
		var run []*Op // the failures of the current run, in answer order
		found := ""
		judge := func() {
			if len(run) == 0 || found != "" {
				return
			}
			firstInv, last := f.v.byIdx[run[0].Invoke], run[len(run)-1]
			t0 := firstInv.Time
			witness := ""
			for si := range d.Inspects {
				s := &d.Inspects[si]
				if witness != "" || s.Time < t0+hang || s.Time > last.Time {
					continue
				}
				if p := findEntry(s, id); p != nil && !leaving(p) && p.Pid == pid && f.censusAlive(pid, s.Time-int64(censusEvery+d.Bounds.Epsilon), last.Time) {
					witness = fmt.Sprintf("inspect at %s shows it %s, unmarked, with %d health failures, and its worker pid %d alive",
						secs(s.Time), p.State, p.Health.ConsecutiveFailures, pid)
				}
			}
			for si := range d.Census {
				s := &d.Census[si]
				if witness == "" && s.Time >= t0+phantom && s.Time <= last.Time && aliveIn(s, pid) {
					witness = fmt.Sprintf("its worker pid %d alive in the census at %s", pid, secs(s.Time))
					break
				}
			}
			if witness == "" {
				return
			}
			found = fmt.Sprintf("pipeline %s is a phantom: ops %d..%d answered every command with a failure for %v (%d failures, first: %q), %s (hang-detection bound %v)",
				id, run[0].Index, last.Index, time.Duration(last.Time-t0).Round(time.Millisecond), len(run), run[0].Error, witness, HangBound(d.Bounds))
		}
		for i := range d.Ops {
			c := &d.Ops[i]
			if c.Type == OpInvoke || c.PipelineID != id || !isClientProcess(c.Process) || !slices.Contains(pipelineCommands, c.F) {
				continue
			}
			inv := f.v.byIdx[c.Invoke]
			if inv == nil {
				continue
			}
			if c.Type == OpOK || opErrorType(c) == protocol.ErrTypeNotFound || f.exempt(id, inv.Time, c.Time) {
				judge()
				run = nil
				continue
			}
			run = append(run, c)
		}
		judge()
		if found != "" {
			out = append(out, found)
		}
	}
	return out
}

// censusAlive reports whether some census sample in [from, to] shows pid
// alive.
func (f *facts) censusAlive(pid int, from, to int64) bool {
	for si := range f.d.Census {
		if s := &f.d.Census[si]; s.Time >= from && s.Time <= to && aliveIn(s, pid) {
			return true
		}
	}
	return false
}

// busy returns, per pipeline id, the spans of commands to it (clients'
// and the nemesis'): [invoke, answer], to the run's end when unanswered.
func (f *facts) busy() map[string][][2]int64 {
	end := runEnd(f.d)
	out := map[string][][2]int64{}
	for i := range f.d.Ops {
		inv := &f.d.Ops[i]
		if inv.Type != OpInvoke || inv.PipelineID == "" {
			continue
		}
		to := end
		if c := f.v.completion(inv); c != nil {
			to = c.Time
		}
		out[inv.PipelineID] = append(out[inv.PipelineID], [2]int64{inv.Time, to})
	}
	return out
}

// longestIdle returns the longest stretch of (from, to] that no span
// covers, and where it starts. Spans are in invoke order.
func longestIdle(spans [][2]int64, from, to int64) (time.Duration, int64) {
	best, at := int64(0), from
	cursor := from
	for _, s := range spans {
		if s[1] <= cursor {
			continue
		}
		if s[0] >= to {
			break
		}
		if s[0] > cursor && s[0]-cursor > best {
			best, at = s[0]-cursor, cursor
		}
		cursor = max(cursor, s[1])
	}
	if to > cursor && to-cursor > best {
		best, at = to-cursor, cursor
	}
	return time.Duration(best), at
}

// judgeHealthLoop checks that each running pipeline's health record shows
// recent probes (or that commands in flight stood in for them).
func (f *facts) judgeHealthLoop() []string {
	d := f.d
	bound := HealthLoopBound(d.Bounds)
	busy := f.busy()
	since := map[string]int64{} // when the pipeline was first seen running
	flagged := map[string]bool{}
	var out []string
	for si := range d.Inspects {
		s := &d.Inspects[si]
		if d.Shutdown.Signal != "" && s.Time >= d.Shutdown.Requested {
			break
		}
		for pi := range s.Pipelines {
			p := &s.Pipelines[pi]
			running := !p.Idle && !leaving(p) && (p.State == "running" || p.State == "paused")
			if !running {
				delete(since, p.PipelineID)
				continue
			}
			if _, ok := since[p.PipelineID]; !ok {
				since[p.PipelineID] = s.Time
				if l := f.lives[p.PipelineID]; l != nil && l.InitOK != nil && l.InitOK.Time < s.Time {
					since[p.PipelineID] = l.InitOK.Time
				}
			}
			if flagged[p.PipelineID] {
				continue
			}
			from, what := since[p.PipelineID], "no probe since it started running"
			if lp := p.Health.LastProbe; lp != nil {
				t := int64(lp.Sub(d.Start))
				if t > s.Time+int64(d.Bounds.Epsilon) {
					continue // a clock the harness does not share
				}
				from, what = max(from, t), "last probe at "+secs(t)
			}
			if time.Duration(s.Time-from) <= bound {
				continue
			}
			idle, at := longestIdle(busy[p.PipelineID], from, s.Time)
			if idle <= bound {
				continue
			}
			flagged[p.PipelineID] = true
			out = append(out, fmt.Sprintf("pipeline %s: inspect at %s shows it %s with %s; no command was in flight for %v from %s, longer than 2 x interval + probe timeout (%v): its health loop stopped",
				p.PipelineID, secs(s.Time), p.State, what, idle.Round(time.Millisecond), secs(at), bound))
		}
	}
	return out
}
