package scenarios

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// TestUnknownFaultIsNeverValid: a fault that fired but is not in the
// catalogue (renamed, or recorded by another harness) makes every checker
// that depends on fault effects unknown, never valid.
func TestUnknownFaultIsNeverValid(t *testing.T) {
	data := func() *RunData {
		h := &hist{}
		h.fault(100, 0, "crash_renamed", "p1", map[string]any{"pid": 11})
		d := runData(h)
		d.Plan = []PlanEntry{{At: Duration(ms(100)), Process: Nemesis, Kind: KindFault, F: "crash_renamed", Target: 1}}
		d.Inspects = []InspectSample{
			inspectAt(50, []string{"p1"}, entry("p1", 11, protocol.StateRunning)),
			inspectAt(3000, []string{"p1"}, entry("p1", 11, protocol.StateRunning)),
		}
		return d
	}
	for _, c := range []struct {
		name  string
		check func(*RunData) Result
	}{
		{"crash_detected", checkCrashDetected},
		{"hang_detected", checkHangDetected},
		{"fault_coverage", checkFaultCoverage},
		{"consistent_health", checkConsistentHealth},
	} {
		t.Run(c.name, func(t *testing.T) {
			runCheckCases(t, c.check, []checkCase{{name: "unknown", data: data, verdict: Unknown, want: "not in the fault catalogue"}})
		})
	}
}

// TestCheckersDecideByEffect: the crash and hang checkers judge a fault by
// its catalogue entry's effect, so the in-worker hang (hang_queue) and the
// process-level hang (hang_process) are judged alike, and an in-worker
// crash is not taken for a SIGKILL with a pid.
func TestCheckersDecideByEffect(t *testing.T) {
	hung := func(f string) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.fault(100, 4000, f, "p1", nil)
			d := runData(h)
			d.Inspects = []InspectSample{inspectAt(3000, []string{"p1"}, entry("p1", 11, protocol.StateRunning))}
			return d
		}
	}
	runCheckCases(t, checkHangDetected, []checkCase{
		{name: protocol.FaultHangQueue, data: hung(protocol.FaultHangQueue), verdict: Invalid, want: "not marked for removal"},
		{name: protocol.FaultHangProcess, data: hung(protocol.FaultHangProcess), verdict: Invalid, want: "not marked for removal"},
		{name: protocol.FaultStaleResponses, data: hung(protocol.FaultStaleResponses), verdict: Valid},
	})
	runCheckCases(t, checkCrashDetected, []checkCase{
		{name: protocol.FaultWorkerCrash, data: hung(protocol.FaultWorkerCrash), verdict: Valid, want: "no crash in this run"},
		{name: protocol.FaultCrash, data: hung(protocol.FaultCrash), verdict: Invalid, want: "still in the table"},
	})
}

// TestFrozenSourceDetection: a frozen source (freeze_source) must lead to
// the pipeline's removal within the stall timeout plus the hang bound; a
// freeze shorter than that, or with the watchdog off, requires nothing.
func TestFrozenSourceDetection(t *testing.T) {
	frozen := func(stall time.Duration, until int, removed bool) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.fault(100, until, protocol.FaultFreezeSource, "p1", nil)
			d := runData(h)
			d.Bounds.SourceStall = stall
			bound := HangBound(d.Bounds) + stall + stall/4
			at := 100 + int(bound.Milliseconds()) + 200 // a sample past the bound
			e := entry("p1", 11, protocol.StateRunning)
			if removed {
				at = 100 + int(bound.Milliseconds())/2
				e.MarkedForRemoval = true
			}
			d.Inspects = []InspectSample{inspectAt(at, []string{"p1"}, e)}
			return d
		}
	}
	runCheckCases(t, checkHangDetected, []checkCase{
		{name: "not removed", data: frozen(time.Second, 60000, false), verdict: Invalid, want: "not marked for removal"},
		{name: "removed", data: frozen(time.Second, 60000, true), verdict: Valid},
		{name: "shorter than the bound", data: frozen(time.Second, 1500, false), verdict: Valid},
		{name: "watchdog off", data: frozen(0, 60000, false), verdict: Valid},
	})
}
