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
