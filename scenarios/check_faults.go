package scenarios

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/chaos"
)

// checkFaultCoverage: each applicable fault of the plan fired (the
// nemesis recorded an ok injection) and its effect was seen. A fault that
// never fired is invalid; one that fired with no visible effect, or whose
// injection went unanswered, is unknown. Faults the target could not take
// (planned at a level its profile lacks, or aimed at a pipeline the
// manager had already removed, or at a worker that could not be told
// apart) are not applicable: listed, never counted as never fired.
func checkFaultCoverage(d *RunData) Result {
	var planned []PlanEntry
	for _, p := range d.Plan {
		if p.Kind == KindFault {
			planned = append(planned, p)
		}
	}
	if len(planned) == 0 {
		return Result{Verdict: Valid, Summary: "no faults were planned"}
	}
	faults := nemesisFaults(d)
	v := newOpView(d.Ops)
	match := faultMatcher(faults)
	bound := HangBound(d.Bounds)
	end := runEnd(d)
	dead := deadPids(d, false) // the census alone: a crash op is no proof of its effect
	var invalid, unknown, notes, na []string
	fired, runtimeNA := 0, 0
	for _, p := range planned {
		name := fmt.Sprintf("%s planned at %v", p.F, p.At.D())
		if p.Target != 0 {
			name += fmt.Sprintf(" on pipeline #%d", p.Target)
		}
		if p.NotApplicable != "" {
			na = append(na, fmt.Sprintf("%s: not applicable: %s", name, p.NotApplicable))
			continue
		}
		w, ok := match(p)
		if !ok && d.Interrupted > 0 && int64(p.At.D()) >= d.Interrupted-int64(d.Bounds.Epsilon) {
			runtimeNA++
			na = append(na, fmt.Sprintf("%s: not reached: the run was interrupted at %s", name, secs(d.Interrupted)))
			continue
		}
		if !ok {
			invalid = append(invalid, name+": never fired (no injection in the history)")
			continue
		}
		if c := v.completion(w.Invoke); c != nil {
			if why := notApplicableOf(c); why != "" {
				runtimeNA++
				na = append(na, fmt.Sprintf("%s: not applicable (%s): %s", name, describeOp(c), why))
				continue
			}
		}
		if w.OK == nil {
			c := v.completion(w.Invoke)
			switch {
			case c == nil:
				invalid = append(invalid, fmt.Sprintf("%s: never fired (%s has no completion)", name, describeOp(w.Invoke)))
			case c.Type == OpInfo:
				unknown = append(unknown, fmt.Sprintf("%s: injection outcome unknown (%s: %s)", name, describeOp(c), c.Error))
			default:
				invalid = append(invalid, fmt.Sprintf("%s: never fired, injection failed (%s: %s)", name, describeOp(c), c.Error))
			}
			continue
		}
		fired++
		wEnd := w.End
		if wEnd < 0 {
			wEnd = end
		}
		switch {
		case w.Fault == nil:
			unknown = append(unknown, fmt.Sprintf("%s: fired (%s) but %s", name, describeOp(w.OK), unknownFault(w)))
		case w.Fault.Kills():
			pid := faultPid(w)
			seen := false
			if _, ok := dead[pid]; ok && pid > 0 {
				seen = true
			}
			for i := range d.Inspects {
				if s := &d.Inspects[i]; s.Time > w.Start && (pid > 0 && findPid(s, pid) == nil || pid == 0 && findEntry(s, w.PipelineID) == nil) {
					seen = true
				}
			}
			if !seen {
				unknown = append(unknown, fmt.Sprintf("%s: fired (%s) but the worker was never seen gone", name, describeOp(w.OK)))
			}
		case w.Fault.Hangs():
			if time.Duration(wEnd-w.Start) <= bound {
				notes = append(notes, fmt.Sprintf("%s: fired; lasted %v, shorter than the detection bound %v",
					name, time.Duration(wEnd-w.Start).Round(time.Millisecond), bound))
				continue
			}
			if !hangSeen(d, v, w, wEnd) {
				unknown = append(unknown, fmt.Sprintf("%s: fired (%s) but no timeout or removal of %s was seen", name, describeOp(w.OK), w.PipelineID))
			}
		case w.Fault.Level() == chaos.LevelClient:
			if msg, ok := clientFaultOutcome(w); ok {
				notes = append(notes, fmt.Sprintf("%s: fired (%s); %s", name, describeOp(w.OK), msg))
			} else {
				unknown = append(unknown, fmt.Sprintf("%s: fired (%s) but %s", name, describeOp(w.OK), msg))
			}
		case w.Fault.CorruptsReplies():
			notes = append(notes, fmt.Sprintf("%s: fired (%s); the run data holds no stale-response counter, counted as observed",
				name, describeOp(w.OK)))
		default:
			notes = append(notes, fmt.Sprintf("%s: fired (%s)", name, describeOp(w.OK)))
		}
	}
	details := append(append(append(invalid, unknown...), na...), notes...)
	applicable := len(planned) - len(na) + runtimeNA
	naText := ""
	if len(na) > 0 {
		naText = fmt.Sprintf("; %d not applicable to this target (listed)", len(na))
	}
	switch {
	case len(invalid) > 0:
		return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d of %d applicable planned faults never fired%s", len(invalid), applicable, naText),
			Details: capDetails(details)}
	case len(unknown) > 0:
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("%d of %d applicable planned faults fired with no effect seen%s", len(unknown), applicable, naText),
			Details: capDetails(details)}
	case runtimeNA > 0 && fired == 0:
		// Every fault found its pipeline gone: the run tested nothing, and
		// a manager that loses pipelines must not pass for it.
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("none of %d applicable planned faults found a live target%s", applicable, naText),
			Details: capDetails(details)}
	}
	return Result{Verdict: Valid, Summary: fmt.Sprintf("all %d applicable planned faults fired and were observed%s", fired, naText), Details: capDetails(details)}
}

// faultMatcher pairs planned faults with the history's injections: by the
// planned time each invoke carries (PlannedAtKey), else the k-th planned
// fault of a name with its k-th injection. Each injection pairs once.
func faultMatcher(faults []faultWindow) func(PlanEntry) (faultWindow, bool) {
	byName := map[string][]int{}
	bySlot := map[string]int{}
	for i, w := range faults {
		byName[w.F] = append(byName[w.F], i)
		if at, ok := valueFields(w.Invoke.Value)[PlannedAtKey].(string); ok {
			bySlot[w.F+"@"+at] = i
		}
	}
	used := map[int]bool{}
	next := map[string]int{}
	return func(p PlanEntry) (faultWindow, bool) {
		if i, ok := bySlot[p.F+"@"+p.At.D().String()]; ok && !used[i] {
			used[i] = true
			return faults[i], true
		}
		for next[p.F] < len(byName[p.F]) {
			i := byName[p.F][next[p.F]]
			next[p.F]++
			if !used[i] {
				used[i] = true
				return faults[i], true
			}
		}
		return faultWindow{}, false
	}
}

// notApplicableOf returns why a nemesis completion was not applicable, or
// "" (see runner.inject).
func notApplicableOf(c *Op) string {
	if c == nil || c.Type != OpFail {
		return ""
	}
	why, _ := valueFields(c.Value)[NotApplicableKey].(string)
	return why
}

// notApplicableFaults lists the planned faults the target could not take:
// those marked at planning time and those the nemesis found inapplicable.
func notApplicableFaults(d *RunData) []NotApplicableFault {
	var out []NotApplicableFault
	for _, p := range d.Plan {
		if p.Kind == KindFault && p.NotApplicable != "" {
			out = append(out, NotApplicableFault{Fault: p.F, At: p.At, Target: p.Target, Reason: p.NotApplicable})
		}
	}
	v := newOpView(d.Ops)
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Process != Nemesis || inv.Type != OpInvoke {
			continue
		}
		if why := notApplicableOf(v.completion(inv)); why != "" {
			at := Duration(inv.Time)
			if s, ok := valueFields(inv.Value)[PlannedAtKey].(string); ok {
				if dd, err := time.ParseDuration(s); err == nil {
					at = Duration(dd)
				}
			}
			out = append(out, NotApplicableFault{Fault: inv.F, At: at, Target: inv.Pipeline, Reason: why})
		}
	}
	return out
}

// clientFaultOutcome judges a client fault by the observation its heal
// recorded, the only complete one (the injection returns while the
// misbehaving client is still at work): ok when the client did its part
// against the manager, with a summary of what it saw, or why not.
func clientFaultOutcome(w faultWindow) (string, bool) {
	obs := w.HealObserved
	switch {
	case obs == nil:
		return "its outcome was never recorded (no completed heal)", false
	case obs["error"] != nil:
		return fmt.Sprintf("it never reached the manager: %v", obs["error"]), false
	case obs["done"] == false:
		return "it was still running when its outcome was recorded", false
	}
	var seen []string
	for _, k := range []string{"bytes_sent", "dropped_by_server", "answer", "error_type", "invalid_payload", "answered", "unanswered"} {
		if v, ok := obs[k]; ok {
			seen = append(seen, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return "saw " + strings.Join(seen, " "), true
}

// hangSeen reports whether a hang had a visible effect: the pipeline was
// marked or removed, or a client command to it failed or went unanswered.
func hangSeen(d *RunData, v *opView, w faultWindow, until int64) bool {
	for i := range d.Inspects {
		s := &d.Inspects[i]
		if s.Time > w.Start && leaving(findEntry(s, w.PipelineID)) {
			return true
		}
	}
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !isClientProcess(inv.Process) || inv.PipelineID != w.PipelineID ||
			inv.Time < w.Start || inv.Time > until {
			continue
		}
		if c := v.completion(inv); c != nil && c.Type != OpOK {
			return true
		}
	}
	return false
}

// ParseSLO splits an SLO key such as "status.p99" into its command and
// quantile (0 < q <= 1; "max" is 1).
func ParseSLO(key string) (cmd string, q float64, err error) {
	i := strings.LastIndexByte(key, '.')
	if i <= 0 {
		return "", 0, fmt.Errorf("slo %q: want <command>.p<N> or <command>.max", key)
	}
	cmd, stat := key[:i], key[i+1:]
	if stat == "max" {
		return cmd, 1, nil
	}
	n, err := strconv.ParseFloat(strings.TrimPrefix(stat, "p"), 64)
	if !strings.HasPrefix(stat, "p") || err != nil || n <= 0 || n > 100 {
		return "", 0, fmt.Errorf("slo %q: want <command>.p<N> (0 < N <= 100) or <command>.max", key)
	}
	return cmd, n / 100, nil
}

// checkSLOs: each latency objective of the scenario holds.
func checkSLOs(d *RunData) Result {
	if d.Scenario == nil || len(d.Scenario.SLOs) == 0 {
		return Result{Verdict: Valid, Summary: "no SLOs"}
	}
	lat := commandLatencies(d)
	var bad, unknown, ok []string
	for _, key := range sortedKeys(d.Scenario.SLOs) {
		limit := d.Scenario.SLOs[key].D()
		cmd, q, err := ParseSLO(key)
		if err != nil {
			unknown = append(unknown, err.Error())
			continue
		}
		ds := sortedDurations(lat[cmd])
		if len(ds) == 0 {
			unknown = append(unknown, fmt.Sprintf("%s: no %s was measured", key, cmd))
			continue
		}
		got := quantile(ds, q)
		line := fmt.Sprintf("%s = %v over %d samples, objective %v", key, got.Round(time.Microsecond), len(ds), limit)
		if got > limit {
			bad = append(bad, line)
		} else {
			ok = append(ok, line)
		}
	}
	details := append(append(bad, unknown...), ok...)
	switch {
	case len(bad) > 0:
		return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d of %d SLOs missed", len(bad), len(d.Scenario.SLOs)), Details: details}
	case len(unknown) > 0:
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("%d of %d SLOs could not be measured", len(unknown), len(d.Scenario.SLOs)), Details: details}
	}
	return Result{Verdict: Valid, Summary: fmt.Sprintf("all %d SLOs met", len(ok)), Details: details}
}
