package scenarios

import (
	"testing"

	"github.com/corral-dev/corral/manager/protocol"
)

// TestCheckLeaksDuringRun: every census sample is judged, not only the one
// after shutdown. testBounds: epsilon 200 ms, so the bound is 1.2 s after
// the first inspect sample without the pipeline.
func TestCheckLeaksDuringRun(t *testing.T) {
	worker := func(pid int, start uint64) launchProc { p := proc(pid, "S"); p.Start = start; return p }
	member := func(pid, pgid int, start uint64) launchProc { p := worker(pid, start); p.Pgid = pgid; return p }
	final := CensusSample{Time: ms(9000), Phase: PhaseFinal}
	// The table shows p1 (pid 11) until 1 s, and not from 1.2 s on.
	inspects := []InspectSample{
		inspectAt(500, []string{"p1"}, entry("p1", 11, protocol.StateRunning)),
		inspectAt(1000, []string{"p1"}, entry("p1", 11, protocol.StateRunning)),
		inspectAt(1200, nil),
		inspectAt(3000, nil),
	}
	run := func(census ...CensusSample) func() *RunData {
		return func() *RunData {
			d := runData(nil)
			d.Inspects = inspects
			d.Census = append(census, final)
			return d
		}
	}
	at := func(t int, procs ...launchProc) CensusSample {
		return CensusSample{Time: ms(t), Phase: PhaseChaos, Procs: procs}
	}
	runCheckCases(t, checkNoLeakedProcesses, []checkCase{
		{name: "gone within the bound", data: run(at(600, worker(11, 7)), at(2000, worker(11, 7)), at(2500)), verdict: Valid},
		{name: "worker outlives its pipeline", data: run(at(600, worker(11, 7)), at(2500, worker(11, 7))),
			verdict: Invalid, want: "worker of pipeline p1, alive 1.3s after the pipeline left the table"},
		{name: "group member outlives it", data: run(at(600, worker(11, 7), member(12, 11, 8)), at(2500, member(12, 11, 8))),
			verdict: Invalid, want: "member of the process group of the worker of pipeline p1"},
		{name: "a reused pid is another process", data: run(at(600, worker(11, 7)), at(2500, worker(11, 99))), verdict: Valid},
		{name: "a zombie is dead", data: run(at(600, worker(11, 7)), at(2500, proc(11, "Z"))), verdict: Valid},
		{name: "never listed", data: run(at(2500, worker(44, 1))), verdict: Valid},
	})
}

// TestCheckSweptProcesses: a process still alive when the manager closes
// its launcher after a SIGTERM was left to the last-resort cleanup.
func TestCheckSweptProcesses(t *testing.T) {
	run := func(signal string, procs ...launchProc) func() *RunData {
		return func() *RunData {
			d := runData(nil)
			d.Shutdown = ShutdownRecord{Signal: signal, Requested: ms(5000), Exited: ms(6000)}
			d.Census = []CensusSample{{Time: ms(5900), Phase: PhaseSweep, Procs: procs}, {Time: ms(6500), Phase: PhaseFinal}}
			return d
		}
	}
	runCheckCases(t, checkNoLeakedProcesses, []checkCase{
		{name: "nothing left", data: run("SIGTERM", proc(9, "Z")), verdict: Valid},
		{name: "left for the launcher", data: run("SIGTERM", proc(9, "S")), verdict: Invalid, want: "swept by the launcher's last-resort cleanup"},
		{name: "a SIGKILL is the sweep", data: run("SIGKILL", proc(9, "S")), verdict: Valid},
	})
}

// TestCheckChurnLeavesNothing: after a churn cycle's terminate is answered
// ok (at 1 s here), its pipeline is in no inspect sample from epsilon
// (200 ms) on, and its worker in no census from KillBound + epsilon on.
func TestCheckChurnLeavesNothing(t *testing.T) {
	cycle := func(h *hist, termType string) {
		h.call(100, 300, churnProcess+"1", protocol.TypeInit, "", OpOK, map[string]any{}, "")
		h.ops[len(h.ops)-1].PipelineID = "c1" // the init's answer names the id
		errText := ""
		if termType != OpOK {
			errText = "operation_error: worker would not stop"
		}
		h.call(900, 100, churnProcess+"1", protocol.TypeTerminate, "c1", termType, map[string]any{}, errText)
	}
	run := func(termType string, inspects []InspectSample, census ...CensusSample) func() *RunData {
		return func() *RunData {
			h := &hist{}
			cycle(h, termType)
			d := runData(h)
			d.Inspects = inspects
			d.Census = census
			return d
		}
	}
	during := inspectAt(600, []string{"c1"}, entry("c1", 21, protocol.StateRunning))
	clean := []InspectSample{during, inspectAt(1300, nil)}
	runCheckCases(t, checkChurnLeavesNothing, []checkCase{
		{name: "nothing left", data: run(OpOK, clean, CensusSample{Time: ms(2500), Phase: PhaseChaos}), verdict: Valid,
			want: "1 churn cycles (1 created and destroyed) left nothing"},
		{name: "entry left in the table", data: run(OpOK, []InspectSample{during, inspectAt(1300, nil, entry("c1", 21, protocol.StateTerminating))}),
			verdict: Invalid, want: "still in the table 300ms after its terminate"},
		{name: "still listed", data: run(OpOK, []InspectSample{during, inspectAt(1300, []string{"c1"})}),
			verdict: Invalid, want: "list_pipelines still shows c1"},
		{name: "worker left in the process table", data: run(OpOK, clean,
			CensusSample{Time: ms(2500), Phase: PhaseChaos, Procs: []launchProc{proc(21, "S")}}),
			verdict: Invalid, want: "the worker of c1, is alive"},
		{name: "a zombie is gone", data: run(OpOK, clean,
			CensusSample{Time: ms(2500), Phase: PhaseChaos, Procs: []launchProc{proc(21, "Z")}}), verdict: Valid},
		{name: "terminate failed", data: run(OpFail, clean), verdict: Unknown, want: "terminate not ok"},
		{name: "no churn", data: func() *RunData { return runData(&hist{}) }, verdict: Valid, want: "no churn"},
	})
}
