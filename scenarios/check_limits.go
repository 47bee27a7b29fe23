package scenarios

import (
	"fmt"
	"strings"
	"time"

	"github.com/corral-dev/corral/chaos"
)

// Slack of the connection rule: connections the harness holds outside the
// history (the sampler's inspect or list), and how long a server may keep
// a slot after its client read the answer or reset the connection.
const (
	harnessConnections = 2
	slotReleaseLag     = 100 * time.Millisecond
)

// checkLimits: the manager's configured limits hold as invariants.
//   - STREAM_MANAGER_MAX_RAM_MB: in every census sample taken while the
//     manager ran, the resident memory of the manager and of its workers
//     (every live process of the census) stays at or below the limit plus
//     one worker (the largest worker seen, at least
//     STREAM_MANAGER_WORKER_RAM_MB): admission may let one worker past the
//     limit, never more.
//   - STREAM_MANAGER_MAX_CONNECTIONS: a client request refused for too many
//     connections is invalid when, at its arrival, the connections that
//     belong to live clients (requests in flight in the history, the
//     harness's own, a client fault at work) were fewer than the cap: the
//     rest belonged to clients that had gone (an abandon_request's, after
//     its resets).
//   - Every adaptive probe timeout that inspect reports stays inside its
//     clamp (manager/timeouts.go): at least the floor
//     (STREAM_MANAGER_PROBE_TIMEOUT_FLOOR, or the health check timeout when
//     that is lower), at most the health check timeout.
func checkLimits(d *RunData) Result {
	ramBad, ramUnknown, ramNote := judgeRAM(d)
	connBad, connNote := judgeConnections(d)
	clampBad, clampNote := judgeClamp(d)
	details := append(append(append(ramBad, connBad...), clampBad...), ramUnknown...)
	notes := []string{ramNote, connNote, clampNote}
	switch {
	case len(ramBad)+len(connBad)+len(clampBad) > 0:
		return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d samples above the RAM limit, %d requests refused for connections held by gone clients, %d probe timeouts outside their clamp",
			len(ramBad), len(connBad), len(clampBad)), Details: capDetails(append(details, notes...))}
	case len(ramUnknown) > 0:
		return Result{Verdict: Unknown, Summary: "the RAM limit could not be judged", Details: capDetails(append(details, notes...))}
	}
	return Result{Verdict: Valid, Summary: strings.Join(notes, "; ")}
}

// clampSlack absorbs the rounding of durations reported in float seconds.
const clampSlack = time.Millisecond

// judgeClamp checks each reported probe timeout against its clamp.
func judgeClamp(d *RunData) (bad []string, note string) {
	b := d.Bounds
	if b.HealthTimeout <= 0 {
		return nil, "probe timeout clamp not known"
	}
	ceiling := b.HealthTimeout
	floor := min(b.ProbeTimeoutFloor, ceiling)
	n, outside := 0, 0
	seen := map[string]bool{} // one detail per pipeline
	for i := range d.Inspects {
		s := &d.Inspects[i]
		for _, p := range s.Pipelines {
			if p.Health.ProbeInterval <= 0 && p.Health.ProbeTimeout <= 0 {
				continue // no health record: consistent_health judges that
			}
			n++
			got := time.Duration(p.Health.ProbeTimeout * float64(time.Second))
			if got >= floor-clampSlack && got <= ceiling+clampSlack {
				continue
			}
			outside++
			if !seen[p.PipelineID] {
				seen[p.PipelineID] = true
				bad = append(bad, fmt.Sprintf("inspect at %s: pipeline %s reports probe timeout %v, outside its clamp [%v, %v]",
					secs(s.Time), p.PipelineID, got, floor, ceiling))
			}
		}
	}
	return bad, fmt.Sprintf("probe timeouts: %d of %d reports inside [%v, %v]", n-outside, n, floor, ceiling)
}

// judgeRAM checks STREAM_MANAGER_MAX_RAM_MB against the census samples.
func judgeRAM(d *RunData) (bad, unknown []string, note string) {
	b := d.Bounds
	if b.MaxRAMMB <= 0 {
		return nil, nil, "no RAM limit set"
	}
	limit := uint64(b.MaxRAMMB) << 20
	slack := uint64(b.WorkerRAMMB) << 20
	type total struct {
		s       *CensusSample
		sum     uint64
		workers int
	}
	var totals []total
	for i := range d.Census {
		s := &d.Census[i]
		// The embedded manager's pid is the harness's: after the
		// manager's exit it measures the harness alone.
		if s.Phase == PhaseFinal || s.ManagerRSS == 0 || d.Shutdown.Exited > 0 && s.Time >= d.Shutdown.Exited {
			continue
		}
		t := total{s: s, sum: s.ManagerRSS}
		for _, p := range s.Procs {
			if p.Zombie() {
				continue
			}
			t.sum += p.RSS
			t.workers++
			slack = max(slack, p.RSS)
		}
		totals = append(totals, t)
	}
	if len(totals) == 0 {
		return nil, []string{fmt.Sprintf("STREAM_MANAGER_MAX_RAM_MB=%d but no census sample measured the manager's resident memory (its pid is unknown)", b.MaxRAMMB)},
			"RAM limit not judged"
	}
	bound := limit + slack
	var peak total
	for _, t := range totals {
		if t.sum > peak.sum {
			peak = t
		}
		if t.sum > bound {
			bad = append(bad, fmt.Sprintf("census at %s: manager %s + %d workers = %s, above the limit %d MiB + one worker %s",
				secs(t.s.Time), mib(t.s.ManagerRSS), t.workers, mib(t.sum), b.MaxRAMMB, mib(slack)))
		}
	}
	refused := 0
	for i := range d.Ops {
		if o := &d.Ops[i]; o.Type == OpFail && ramRefusal(o.Error) {
			refused++
		}
	}
	// Storms record their refusals in their observation.
	for _, w := range nemesisFaults(d) {
		if n, ok := numberField(w.HealObserved, "refused"); ok {
			refused += int(n)
		}
	}
	note = fmt.Sprintf("RAM: peak %s (%d workers, at %s) of limit %d MiB + one worker %s over %d samples; %d inits refused",
		mib(peak.sum), peak.workers, secs(peak.s.Time), b.MaxRAMMB, mib(slack), len(totals), refused)
	return bad, nil, note
}

// ramRefusal reports whether an error text is a refusal for memory.
func ramRefusal(errText string) bool {
	e := strings.ToLower(errText)
	return strings.Contains(e, "max_ram") || strings.Contains(e, "memory")
}

// connRefusal reports whether an error text is a refusal for too many open
// connections.
func connRefusal(errText string) bool {
	e := strings.ToLower(errText)
	return strings.Contains(e, "max_connections") || strings.Contains(e, "too many") && strings.Contains(e, "connection")
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// judgeConnections checks STREAM_MANAGER_MAX_CONNECTIONS against the
// refusals in the history.
func judgeConnections(d *RunData) (bad []string, note string) {
	maxConns := d.Bounds.MaxConnections
	if maxConns <= 0 {
		return nil, "connection cap not known"
	}
	v := newOpView(d.Ops)
	faults := nemesisFaults(d)
	end := runEnd(d)
	refused := 0
	for i := range d.Ops {
		c := &d.Ops[i]
		if c.Type != OpFail || !isClientProcess(c.Process) || !connRefusal(c.Error) {
			continue
		}
		inv, ok := v.byIdx[c.Invoke]
		if !ok {
			continue
		}
		refused++
		// The connection arrived somewhere between the invoke and the
		// refusal: judge the whole interval, counting every request that
		// was open at any moment of it.
		from, t := inv.Time, c.Time
		if excuse := liveClientFault(faults, from, t, end); excuse != "" {
			continue
		}
		live := 0
		for j := range d.Ops {
			o := &d.Ops[j]
			if o.Type != OpInvoke || o == inv || o.Time > t {
				continue
			}
			if oc := v.completion(o); oc == nil || oc.Time >= from-int64(slotReleaseLag) {
				live++
			}
		}
		if live+harnessConnections < maxConns {
			msg := fmt.Sprintf("%s: refused for connections (op %d) while %d requests were in flight (+%d of the harness's own) of STREAM_MANAGER_MAX_CONNECTIONS=%d",
				describeOp(inv), c.Index, live, harnessConnections, maxConns)
			if gone := recentAbandons(faults, t); gone != "" {
				msg += "; the other slots were held for clients already gone: " + gone
			}
			bad = append(bad, msg)
		}
	}
	return bad, fmt.Sprintf("connections: %d refusals judged against the cap of %d", refused, maxConns)
}

// liveClientFault names a client fault (or one not in the catalogue)
// whose connections may be open and alive at some moment of [from, t], or
// "". Its clients are alive from its invoke to its heal, which waits for
// them: then a burst's have their answers, and an abandoning fault's have
// reset theirs and are gone.
func liveClientFault(faults []faultWindow, from, t, end int64) string {
	for _, w := range faults {
		if w.Fault != nil && w.Fault.Level() != chaos.LevelClient {
			continue
		}
		until := w.End
		if until < 0 {
			until = end
		}
		// A reset reaches the server's reader at once, but its goroutine
		// needs a moment to give the slot back.
		if w.Invoke.Time <= t && from <= until+int64(slotReleaseLag) {
			return w.F
		}
	}
	return ""
}

// recentAbandons describes the abandoning faults that ended within
// abandonMemory before t.
func recentAbandons(faults []faultWindow, t int64) string {
	const abandonMemory = int64(10 * time.Second)
	var out []string
	for _, w := range faults {
		if w.Fault != nil && w.Fault.AbandonsConnections() && w.End >= 0 && w.End <= t && t-w.End <= abandonMemory && w.OK != nil {
			out = append(out, fmt.Sprintf("%s (%s ago)", describeOp(w.OK), time.Duration(t-w.End).Round(time.Millisecond)))
		}
	}
	return strings.Join(out, ", ")
}
