package scenarios

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// pollObservables names what the poll-based checks judge from.
const pollObservables = "observables: list_pipelines and status, polled and as the workload saw them, plus the /proc census; the target has no inspect"

// failedStates are the status report source states that say a pipeline
// has failed or ended.
var failedStates = []string{"ERROR", "ENDED", "TERMINATING"}

// pollStatus returns id's status answer in s, or nil.
func pollStatus(s *PollSample, id string) *StatusPoll {
	for i := range s.Status {
		if s.Status[i].PipelineID == id {
			return &s.Status[i]
		}
	}
	return nil
}

// pollGone decides from one poll whether the manager has let pipeline id
// go: its id left list_pipelines, or its status answers a failure or a
// failed source state. decided is false when the poll saw neither an
// answered list nor an answered status for id.
func pollGone(s *PollSample, id string) (gone, decided bool) {
	if st := pollStatus(s, id); st != nil && st.Answered {
		if !st.OK || slices.ContainsFunc(st.States, func(x string) bool { return slices.Contains(failedStates, x) }) {
			return true, true
		}
		if s.Listed == nil {
			return false, true
		}
	}
	if s.Listed == nil {
		return false, false
	}
	return !slices.Contains(s.Listed, id), true
}

// sighting is one observation of whether the manager still holds a
// pipeline: from a poll of the sampler or from a client's own answer.
type sighting struct {
	at   int64
	gone bool
}

// sightings lists, in time order, every decided observation of pipeline
// id: the sampler's polls (see pollGone) and the workload's answers — a
// list_pipelines answer (listed or not), a status answer (its source
// states), and any command answered not_found (gone). The workload's
// answers keep a serial server judgeable while the sampler's own requests
// wait behind a stuck one.
func sightings(d *RunData, id string) []sighting {
	var out []sighting
	for i := range d.Polls {
		if gone, decided := pollGone(&d.Polls[i], id); decided {
			out = append(out, sighting{d.Polls[i].Time, gone})
		}
	}
	for i := range d.Ops {
		c := &d.Ops[i]
		if c.Type == OpInvoke || !isClientProcess(c.Process) {
			continue
		}
		switch {
		case c.F == "list_pipelines" && c.Type == OpOK:
			listed, _ := valueFields(c.Value)["pipelines"].([]any)
			gone := !slices.ContainsFunc(listed, func(x any) bool { return x == id })
			out = append(out, sighting{c.Time, gone})
		case c.PipelineID != id:
		case c.Type == OpFail && strings.Contains(c.Error, "not_found"):
			out = append(out, sighting{c.Time, true})
		case c.F == "status" && c.Type == OpOK:
			out = append(out, sighting{c.Time, slices.ContainsFunc(reportStates(valueFields(c.Value)), func(x string) bool { return slices.Contains(failedStates, x) })})
		}
	}
	slices.SortStableFunc(out, func(a, b sighting) int { return cmp.Compare(a.at, b.at) })
	return out
}

// detectedBySightings is detectedBy over sightings of pipeline id: valid
// when one in (t0, t0+bound] shows it gone, invalid when a later one still
// does not, unknown when none decides.
func detectedBySightings(d *RunData, t0, bound int64, id string) (string, int64) {
	for _, s := range sightings(d, id) {
		if s.at < t0 {
			continue
		}
		if s.at <= t0+bound {
			if s.gone {
				return Valid, s.at
			}
			continue
		}
		if s.gone {
			return Unknown, s.at
		}
		return Invalid, s.at
	}
	return Unknown, 0
}

// checkConsistentHealthPolls judges a target without inspect: what
// list_pipelines says must agree with status and with the processes. A
// listed id whose status answers not_found twice in a row, an id still
// listed well after its terminate was answered ok, and an id listed with
// a running status while the worker the nemesis signalled for it has been
// dead past the crash bound are inconsistencies.
func checkConsistentHealthPolls(d *RunData) Result {
	b := d.Bounds
	detect := int64(b.crashBound() + b.Epsilon)
	var details []string
	reported := map[string]bool{} // one detail per pipeline and kind
	add := func(s *PollSample, key, format string, args ...any) {
		if reported[key] {
			return
		}
		reported[key] = true
		details = append(details, fmt.Sprintf("poll at %s: ", secs(s.Time))+fmt.Sprintf(format, args...))
	}
	terminated := map[string]*Op{}
	v := newOpView(d.Ops)
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type == OpInvoke && inv.F == "terminate" && isClientProcess(inv.Process) {
			if c := v.completion(inv); c != nil && c.Type == OpOK && c.PipelineID != "" {
				if _, ok := terminated[c.PipelineID]; !ok {
					terminated[c.PipelineID] = c
				}
			}
		}
	}
	// The worker pid of each pipeline, as the nemesis's faults found it.
	workerOf := map[string]int{}
	for _, w := range nemesisFaults(d) {
		if pid := faultPid(w); pid > 0 && w.PipelineID != "" {
			workerOf[w.PipelineID] = pid
		}
	}
	dead := deadPids(d, false)
	notFound := map[string]int{}
	for si := range d.Polls {
		s := &d.Polls[si]
		for _, id := range s.Listed {
			st := pollStatus(s, id)
			if st != nil && st.Answered && st.ErrorType == "not_found" {
				notFound[id]++
				if notFound[id] == 2 {
					add(s, "notfound:"+id, "list_pipelines shows %s, but its status answers not_found", id)
				}
			} else if st != nil && st.Answered {
				notFound[id] = 0
			}
			if t, ok := terminated[id]; ok && s.Time > t.Time+detect {
				add(s, "terminated:"+id, "%s is still listed %v after its terminate was answered ok (op %d)",
					id, time.Duration(s.Time-t.Time).Round(time.Millisecond), t.Index)
			}
			if pid, ok := workerOf[id]; ok {
				if death, ok := dead[pid]; ok && s.Time > death.at+detect && st != nil && st.Answered && st.OK &&
					!slices.ContainsFunc(st.States, func(x string) bool { return slices.Contains(failedStates, x) }) {
					add(s, "dead:"+id, "%s is listed and its status answers success (states %v), but its worker pid %d has been dead for %v (%s), bound %v",
						id, st.States, pid, time.Duration(s.Time-death.at).Round(time.Millisecond), death.how, b.crashBound()+b.Epsilon)
				}
			}
		}
	}
	if len(details) == 0 {
		return Result{Verdict: Valid, Summary: fmt.Sprintf("list, status and processes agree in %d polls (%s)", len(d.Polls), pollObservables)}
	}
	return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d inconsistencies between list, status and processes (%s)", len(details), pollObservables),
		Details: capDetails(details)}
}
