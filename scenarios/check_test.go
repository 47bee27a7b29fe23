package scenarios

import (
	"slices"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

func TestCheckNoLeakedProcesses(t *testing.T) {
	census := func(samples ...CensusSample) func() *RunData {
		return func() *RunData { d := runData(nil); d.Census = samples; return d }
	}
	runCheckCases(t, checkNoLeakedProcesses, []checkCase{
		{"no census", census(), Unknown, "no census"},
		{"no final census", census(CensusSample{Time: ms(100), Phase: "chaos", Procs: nil}), Unknown, "after shutdown"},
		{"clean", census(CensusSample{Time: ms(100), Phase: "chaos", Procs: []launchProc{proc(10, "S")}},
			CensusSample{Time: ms(900), Phase: PhaseFinal}), Valid, "no process left"},
		{"live leak", census(CensusSample{Time: ms(900), Phase: PhaseFinal, Procs: []launchProc{proc(10, "S")}}), Invalid, "pid 10"},
		{"zombie", census(CensusSample{Time: ms(900), Phase: PhaseFinal, Procs: []launchProc{proc(11, "Z")}}), Invalid, "zombie pid 11"},
		{"stopped worker counts", census(CensusSample{Time: ms(900), Phase: PhaseFinal, Procs: []launchProc{proc(12, "T")}}), Invalid, "state T"},
	})
}

func TestCheckBoundedShutdown(t *testing.T) {
	run := func(sd ShutdownRecord, samples ...CensusSample) func() *RunData {
		return func() *RunData { d := runData(nil); d.Shutdown = sd; d.Census = samples; return d }
	}
	// Bound after SIGTERM: grace 1s + join 2s + epsilon 200ms = 3.2s.
	runCheckCases(t, checkBoundedShutdown, []checkCase{
		{"no shutdown", run(ShutdownRecord{}), Unknown, "not shut down"},
		{"sigterm in time", run(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(4000)}), Valid, "exited 0"},
		{"sigterm late", run(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(4300)}), Invalid, "bound 3.2s"},
		{"sigterm never exits", run(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000)}), Invalid, "never exited"},
		{"sigterm bad exit code", run(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(1500), ExitCode: 2}), Invalid, "exit code 2"},
		{"sigterm leaves workers", run(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(1500)},
			CensusSample{Time: ms(4500), Phase: PhaseFinal, Procs: []launchProc{proc(20, "S")}}), Invalid, "pid 20"},
		{"sigkill clean", run(ShutdownRecord{Signal: "SIGKILL", Requested: ms(1000), Exited: ms(1001)},
			CensusSample{Time: ms(1500), Phase: "shutdown", Procs: []launchProc{proc(20, "S")}},
			CensusSample{Time: ms(2300), Phase: PhaseFinal, Procs: []launchProc{proc(21, "Z")}}), Valid, "every worker gone"},
		{"sigkill orphans", run(ShutdownRecord{Signal: "SIGKILL", Requested: ms(1000), Exited: ms(1001)},
			CensusSample{Time: ms(2300), Phase: PhaseFinal, Procs: []launchProc{proc(20, "S")}}), Invalid, "pid 20"},
		{"sigkill no late census", run(ShutdownRecord{Signal: "SIGKILL", Requested: ms(1000), Exited: ms(1001)},
			CensusSample{Time: ms(1500), Phase: PhaseFinal}), Unknown, "no census"},
	})
}

func TestCheckRequestsAnswered(t *testing.T) {
	build := func(f func(h *hist, d *RunData)) func() *RunData {
		return func() *RunData { h := &hist{}; d := runData(nil); f(h, d); d.Ops = h.ops; return d }
	}
	runCheckCases(t, checkRequestsAnswered, []checkCase{
		{"all answered", build(func(h *hist, d *RunData) {
			h.call(0, 50, "client-1", "status", "p1", OpOK, map[string]any{"report": map[string]any{}}, "")
			h.call(10, 900, "client-2", "consume_result", "p1", OpFail, nil, "operation_error")
			h.call(20, 2500, "client-1", "init", "", OpOK, nil, "")        // bound 1s+2s+0.2s
			h.call(30, 3000, "client-3", "terminate", "p1", OpOK, nil, "") // bound 3.2s
			h.call(40, 5, "client-3", "list_pipelines", "", OpOK, nil, "")
		}), Valid, "all 5 requests"},
		{"no answer", build(func(h *hist, d *RunData) {
			h.call(0, 5000, "client-1", "status", "p1", OpInfo, nil, "i/o timeout")
		}), Invalid, "no answer after 5s (i/o timeout)"},
		{"late", build(func(h *hist, d *RunData) {
			h.call(0, 1300, "client-1", "mute", "p1", OpFail, nil, "operation_error")
		}), Invalid, "bound 1.2s"},
		{"late list", build(func(h *hist, d *RunData) {
			h.call(0, 1300, "client-1", "list_pipelines", "", OpOK, nil, "")
		}), Invalid, "answered ok after 1.3s"},
		{"never completed", build(func(h *hist, d *RunData) {
			h.invoke(0, "client-1", "status", "p1", nil)
		}), Invalid, "never completed"},
		{"answered twice", build(func(h *hist, d *RunData) {
			inv := h.invoke(0, "client-1", "status", "p1", nil)
			h.complete(inv, 10, OpOK, nil, "")
			h.complete(inv, 20, OpOK, nil, "")
		}), Invalid, "completed 2 times"},
		{"nemesis ops are not requests", build(func(h *hist, d *RunData) {
			h.invoke(0, Nemesis, "crash", "p1", nil)
		}), Valid, "all 0 requests"},
		{"cut by shutdown", build(func(h *hist, d *RunData) {
			d.Shutdown = ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(2000)}
			h.call(900, 5000, "client-1", "status", "p1", OpOK, nil, "")                   // exempt from the bound
			h.call(1100, 5, "client-1", "status", "p1", OpInfo, nil, "connection refused") // refused after shutdown
			h.call(1500, 600, "client-2", "status", "p1", OpInfo, nil, "i/o timeout")      // cut by the manager's exit
		}), Valid, ""},
		{"timeout during shutdown before exit", build(func(h *hist, d *RunData) {
			d.Shutdown = ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(9000)}
			h.call(1100, 2000, "client-1", "status", "p1", OpInfo, nil, "i/o timeout")
		}), Invalid, "no answer"},
		{"before shutdown not exempt", build(func(h *hist, d *RunData) {
			d.Shutdown = ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(2000)}
			h.call(500, 1500, "client-1", "status", "p1", OpInfo, nil, "connection reset")
		}), Invalid, "no answer"},
	})
}

func TestCheckResponsesMatch(t *testing.T) {
	one := func(f string, value any) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.call(0, 5, "client-1", f, "p1", OpOK, value, "")
			return runData(h)
		}
	}
	report := map[string]any{"status": "success", "report": map[string]any{"inference_throughput": 1.0}}
	consume := map[string]any{"status": "success", "outputs": []any{}, "frames_metadata": []any{}}
	runCheckCases(t, checkResponsesMatch, []checkCase{
		{"status ok", one("status", report), Valid, "all 1 ok answers"},
		{"consume ok", one("consume_result", consume), Valid, ""},
		{"list ok", one("list_pipelines", map[string]any{"pipelines": []any{"p1"}}), Valid, ""},
		{"mute ok", one("mute", map[string]any{"status": "success"}), Valid, ""},
		{"status without report", one("status", map[string]any{"status": "success"}), Invalid, "no report"},
		{"consume gets a status answer", one("consume_result", report), Invalid, "carries report"},
		{"mute gets a consume answer", one("mute", consume), Invalid, "carries outputs"},
		{"list without pipelines", one("list_pipelines", map[string]any{"status": "success"}), Invalid, "no pipelines"},
		{"answer for another pipeline", one("status", map[string]any{"report": map[string]any{}, "pipeline_id": "p2"}), Invalid, "pipeline p2"},
		{"struct values are read as JSON", one("consume_result", struct {
			Outputs        []any `json:"outputs"`
			FramesMetadata []any `json:"frames_metadata"`
		}{[]any{}, []any{}}), Valid, ""},
		{"failures are not judged", func() *RunData {
			h := &hist{}
			h.call(0, 5, "client-1", "status", "p1", OpFail, nil, "not_found")
			return runData(h)
		}, Valid, "all 0 ok answers"},
	})
}

func TestCheckConsistentHealth(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	withHealth := func(e protocol.PipelineInfo, failures int, probe time.Duration, lastErr string) protocol.PipelineInfo {
		tp := at.Add(probe)
		e.Health.ConsecutiveFailures, e.Health.LastProbe, e.Health.LastError = failures, &tp, lastErr
		return e
	}
	marked := func(e protocol.PipelineInfo) protocol.PipelineInfo { e.MarkedForRemoval = true; return e }
	idle := func(e protocol.PipelineInfo) protocol.PipelineInfo {
		e.Idle = true
		e.State = protocol.StateIdle
		return e
	}
	run := func(h *hist, samples ...InspectSample) func() *RunData {
		return func() *RunData {
			d := runData(h)
			d.Inspects = samples
			return d
		}
	}
	p1 := entry("p1", 101, protocol.StateRunning)
	L := []string{"p1"}
	runCheckCases(t, checkConsistentHealth, []checkCase{
		{"no samples", run(nil), Unknown, "no inspect"},
		{"consistent", run(nil, inspectAt(0, L, p1, idle(entry("w9", 109, ""))), inspectAt(500, L, p1)), Valid, "agree in 2 samples"},
		{"no health record", run(nil, inspectAt(0, L, func() protocol.PipelineInfo { e := p1; e.Health.ProbeInterval = 0; return e }())),
			Invalid, "no health record"},
		{"too many failures unmarked", run(nil, inspectAt(0, L, withHealth(p1, 3, 0, "timeout")), inspectAt(200, L, withHealth(p1, 3, 0, "timeout"))),
			Invalid, "3 consecutive failures"},
		{"too many failures, marked by the next sample", run(nil, inspectAt(0, L, withHealth(p1, 3, 0, "timeout")),
			inspectAt(200, L, marked(withHealth(p1, 3, 0, "timeout")))), Valid, ""},
		{"too many failures marked", run(nil, inspectAt(0, L, marked(withHealth(p1, 3, 0, "timeout")))), Valid, ""},
		{"failures reset on success", run(nil, inspectAt(0, L, withHealth(p1, 2, 0, "timeout")), inspectAt(500, L, withHealth(p1, 0, time.Second, ""))), Valid, ""},
		{"failures not reset", run(nil, inspectAt(0, L, withHealth(p1, 2, 0, "timeout")), inspectAt(500, L, withHealth(p1, 2, time.Second, ""))),
			Invalid, "not reset"},
		{"crashed pid kept", func() *RunData {
			h := &hist{}
			h.fault(100, 0, "crash", "p1", map[string]any{"pid": 101.0})
			return run(h, inspectAt(0, L, p1), inspectAt(1000, L, p1), inspectAt(1500, L, p1))()
		}, Invalid, "pid 101, dead for"},
		{"crashed pid removed in time", func() *RunData {
			h := &hist{}
			h.fault(100, 0, "crash", "p1", map[string]any{"pid": 101.0})
			return run(h, inspectAt(0, L, p1), inspectAt(1000, L, p1), inspectAt(1500, nil))()
		}, Valid, ""},
		{"census says dead", func() *RunData {
			d := run(nil, inspectAt(0, L, p1), inspectAt(3000, L, p1))()
			d.Census = []CensusSample{{Time: ms(0), Procs: []launchProc{proc(101, "S")}}, {Time: ms(1000)}, {Time: ms(2000)}}
			return d
		}, Invalid, "missing from the census"},
		{"terminated pipeline kept", func() *RunData {
			h := &hist{}
			h.call(100, 50, "client-1", "terminate", "p1", OpOK, nil, "")
			return run(h, inspectAt(0, L, p1), inspectAt(2000, nil, p1))()
		}, Invalid, "after its terminate"},
		{"marked lets a command through", func() *RunData {
			h := &hist{}
			h.call(600, 10, "client-1", "status", "p1", OpOK, map[string]any{"report": map[string]any{}}, "")
			h.call(700, 10, "client-2", "mute", "p1", OpFail, nil, "operation_error")
			return run(h, inspectAt(0, L, p1), inspectAt(300, L, marked(p1)))()
		}, Invalid, "marked for removal at 0.300s"},
		{"command just after marking tolerated", func() *RunData {
			h := &hist{}
			h.call(400, 10, "client-1", "status", "p1", OpOK, map[string]any{"report": map[string]any{}}, "")
			return run(h, inspectAt(300, L, marked(p1)))()
		}, Valid, ""},
		{"list misses a running pipeline", run(nil, inspectAt(0, nil, p1), inspectAt(500, nil, p1)), Invalid, "list_pipelines does not show it"},
		{"list race tolerated once", run(nil, inspectAt(0, nil, p1), inspectAt(500, L, p1)), Valid, ""},
		{"list misses a starting pipeline", run(nil, inspectAt(0, nil, entry("p1", 101, protocol.StateStarting)),
			inspectAt(500, nil, entry("p1", 101, protocol.StateStarting))), Valid, ""},
		{"list shows a phantom", run(nil, inspectAt(0, []string{"p1", "ghost"}, p1), inspectAt(500, []string{"p1", "ghost"}, p1)),
			Invalid, "ghost, which is not in the table"},
		{"list shows an idle worker", run(nil, inspectAt(0, []string{"w9"}, idle(entry("w9", 109, ""))), inspectAt(500, []string{"w9"}, idle(entry("w9", 109, "")))),
			Invalid, "idle worker w9"},
	})
}

func TestCheckCrashDetected(t *testing.T) {
	p1 := entry("p1", 101, protocol.StateRunning)
	crash := func(samples ...InspectSample) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.fault(1000, 0, "crash", "p1", map[string]any{"pid": 101, "signal": "SIGKILL"})
			d := runData(h)
			d.Inspects = samples
			return d
		}
	}
	runCheckCases(t, checkCrashDetected, []checkCase{
		{"no crash", func() *RunData { return runData(nil) }, Valid, "no crash in this run"},
		{"detected", crash(inspectAt(900, nil, p1), inspectAt(1500, nil, p1), inspectAt(2000, nil)), Valid, "all 1 crashes detected"},
		{"not detected", crash(inspectAt(1500, nil, p1), inspectAt(2300, nil, p1)), Invalid, "still in the table at 2.300s"},
		{"no sample in the window", crash(inspectAt(900, nil, p1), inspectAt(5000, nil)), Unknown, "no sample of the manager's view"},
		{"no sample after", crash(inspectAt(900, nil, p1)), Unknown, ""},
		{"pid replaced by a new worker", crash(inspectAt(1500, nil, entry("p1", 202, protocol.StateRunning))), Valid, ""},
	})
}

func TestCheckHangDetected(t *testing.T) {
	p1 := entry("p1", 101, protocol.StateRunning)
	markedP1 := p1
	markedP1.MarkedForRemoval = true
	hang := func(f string, from, to int, params map[string]any, samples ...InspectSample) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.fault(from, to, f, "p1", params)
			d := runData(h)
			d.Inspects = samples
			return d
		}
	}
	// Hang bound: 1.5s.
	runCheckCases(t, checkHangDetected, []checkCase{
		{"detected", hang("hang_queue", 1000, 4000, nil, inspectAt(1500, nil, p1), inspectAt(2400, nil, markedP1), inspectAt(3000, nil)), Valid, "all 1 hangs"},
		{"removed counts", hang("hang_process", 1000, 4000, nil, inspectAt(2000, nil)), Valid, ""},
		{"not detected", hang("hang_queue", 1000, 4000, nil, inspectAt(1500, nil, p1), inspectAt(2600, nil, p1)), Invalid, "not marked for removal by 2.600s"},
		{"short hang not required", hang("hang_queue", 1000, 2000, nil, inspectAt(1500, nil, p1), inspectAt(3000, nil, p1)), Valid, "no hang in this run"},
		{"never healed lasts to the end", hang("hang_process", 1000, 0, nil, inspectAt(3000, nil, p1)), Invalid, "not marked"},
		{"no sample decides", hang("hang_queue", 1000, 4000, nil, inspectAt(500, nil, p1)), Unknown, "no sample of the manager's view"},
		{"slow but healthy kept", hang("slow_probe", 1000, 4000, map[string]any{"delay_seconds": 0.05},
			inspectAt(2000, nil, p1), inspectAt(3500, nil, p1)), Valid, ""},
		{"slow but healthy killed", hang("slow_probe", 1000, 4000, map[string]any{"delay_seconds": 0.05},
			inspectAt(2000, nil, p1), inspectAt(3500, nil, markedP1)), Invalid, "slow but healthy worker"},
		{"slow above the timeout must be caught", hang("slow_probe", 1000, 4000, map[string]any{"params": map[string]any{"delay_seconds": 0.5}},
			inspectAt(3000, nil, p1)), Invalid, "not marked"},
		{"slow removed by a terminate is not judged", func() *RunData {
			d := hang("slow_probe", 1000, 4000, map[string]any{"delay_seconds": 0.05}, inspectAt(3500, nil))()
			h := &hist{ops: d.Ops}
			h.call(2000, 10, "client-1", "terminate", "p1", OpOK, nil, "")
			d.Ops = h.ops
			return d
		}, Valid, ""},
	})
}

func TestCheckFaultCoverage(t *testing.T) {
	plan := func(entries ...PlanEntry) []PlanEntry { return entries }
	fault := func(f string, at time.Duration) PlanEntry {
		return PlanEntry{At: Duration(at), Process: Nemesis, Kind: KindFault, F: f, Target: 1}
	}
	run := func(p []PlanEntry, build func(h *hist), samples ...InspectSample) func() *RunData {
		return func() *RunData {
			h := &hist{}
			build(h)
			d := runData(h)
			d.Plan = p
			d.Inspects = samples
			return d
		}
	}
	p1 := entry("p1", 101, protocol.StateRunning)
	runCheckCases(t, checkFaultCoverage, []checkCase{
		{"nothing planned", run(nil, func(*hist) {}), Valid, "no faults"},
		{"commands are not faults", run(plan(PlanEntry{Kind: KindCommand, F: "status"}), func(*hist) {}), Valid, "no faults"},
		{"never fired", run(plan(fault("crash", time.Second)), func(*hist) {}), Invalid, "crash planned at 1s on pipeline #1: never fired"},
		{"not reached by an interrupted run", func() *RunData {
			d := run(plan(fault("crash", time.Second), fault("crash", 5*time.Second)), func(h *hist) {
				h.fault(1000, 0, "crash", "p1", map[string]any{"pid": 101})
			}, inspectAt(1500, nil))()
			d.Interrupted = int64(3 * time.Second)
			return d
		}, Valid, "1 not applicable"},
		{"an interrupted run still owes what it planned before", func() *RunData {
			d := run(plan(fault("crash", time.Second)), func(*hist) {})()
			d.Interrupted = int64(3 * time.Second)
			return d
		}, Invalid, "never fired"},
		{"injection failed", run(plan(fault("hang_queue", time.Second)), func(h *hist) {
			h.call(1000, 5, Nemesis, "hang_queue", "p1", OpFail, nil, "not_found")
		}), Invalid, "injection failed"},
		{"injection outcome unknown", run(plan(fault("hang_queue", time.Second)), func(h *hist) {
			h.call(1000, 5, Nemesis, "hang_queue", "p1", OpInfo, nil, "timeout")
		}), Unknown, "outcome unknown"},
		{"crash fired and seen", run(plan(fault("crash", time.Second)), func(h *hist) {
			h.fault(1000, 0, "crash", "p1", map[string]any{"pid": 101})
		}, inspectAt(1500, nil)), Valid, "all 1 applicable planned faults"},
		{"crash fired, never seen", run(plan(fault("crash", time.Second)), func(h *hist) {
			h.fault(1000, 0, "crash", "p1", map[string]any{"pid": 101})
		}, inspectAt(1500, nil, p1)), Unknown, "never seen gone"},
		{"short hang", run(plan(fault("hang_queue", time.Second)), func(h *hist) {
			h.fault(1000, 1500, "hang_queue", "p1", nil)
		}), Valid, "shorter than the detection bound"},
		{"long hang seen by a client", run(plan(fault("hang_queue", time.Second)), func(h *hist) {
			h.fault(1000, 4000, "hang_queue", "p1", nil)
			h.call(1200, 1000, "client-1", "status", "p1", OpFail, nil, "operation_error")
		}), Valid, ""},
		{"long hang unseen", run(plan(fault("hang_queue", time.Second)), func(h *hist) {
			h.fault(1000, 4000, "hang_queue", "p1", nil)
		}, inspectAt(2000, nil, p1)), Unknown, "no timeout or removal"},
		{"stale responses counted when fired", run(plan(fault("stale_responses", time.Second)), func(h *hist) {
			h.fault(1000, 2000, "stale_responses", "p1", nil)
		}), Valid, "no stale-response counter"},
		// Client faults return while the client is still at work: only the
		// heal's observation says whether it reached the manager.
		{"client fault judged by its heal", run(plan(fault("client_burst", time.Second)), func(h *hist) {
			h.call(1000, 1, Nemesis, "client_burst", "", OpOK, map[string]any{"clients": 20, "done": false}, "")
			h.call(1001, 300, Nemesis, healPrefix+"client_burst", "", OpOK,
				map[string]any{"clients": 20, "done": true, "answered": 20, "unanswered": 0}, "")
		}), Valid, "saw answered=20 unanswered=0"},
		{"client fault that never reached the manager", run(plan(fault("client_stall", time.Second)), func(h *hist) {
			h.call(1000, 1, Nemesis, "client_stall", "", OpOK, map[string]any{"done": false}, "")
			h.call(4000, 1, Nemesis, healPrefix+"client_stall", "", OpOK,
				map[string]any{"done": true, "error": "dial tcp 127.0.0.1:1: connect: connection refused"}, "")
		}), Unknown, "never reached the manager: dial tcp"},
		{"client fault with no outcome recorded", run(plan(fault("malformed_frame", time.Second)), func(h *hist) {
			h.call(1000, 1, Nemesis, "malformed_frame", "", OpOK, map[string]any{"cases": 6, "done": false}, "")
		}), Unknown, "outcome was never recorded"},
		{"client fault still running at its heal", run(plan(fault("oversized_frame", time.Second)), func(h *hist) {
			h.call(1000, 1, Nemesis, "oversized_frame", "", OpOK, map[string]any{"done": false}, "")
			h.call(1001, 1, Nemesis, healPrefix+"oversized_frame", "", OpOK, map[string]any{"done": false}, "")
		}), Unknown, "still running"},
		{"second of two never fired", run(plan(fault("crash", time.Second), fault("crash", 2*time.Second)), func(h *hist) {
			h.fault(1000, 0, "crash", "p1", map[string]any{"pid": 101})
		}, inspectAt(1500, nil)), Invalid, "crash planned at 2s"},
	})
}

func TestCheckSLOs(t *testing.T) {
	run := func(slos map[string]Duration) func() *RunData {
		return func() *RunData {
			h := &hist{}
			for i := range 100 {
				h.call(i*10, 10+i, "client-1", "status", "p1", OpOK, nil, "") // 10ms..109ms
			}
			d := runData(h)
			d.Scenario.SLOs = slos
			return d
		}
	}
	runCheckCases(t, checkSLOs, []checkCase{
		{"none", run(nil), Valid, "no SLOs"},
		{"met", run(map[string]Duration{"status.p99": Duration(200 * time.Millisecond), "status.p50": Duration(60 * time.Millisecond)}), Valid, "all 2 SLOs met"},
		{"missed", run(map[string]Duration{"status.p99": Duration(50 * time.Millisecond)}), Invalid, "status.p99 = 108ms"},
		{"max", run(map[string]Duration{"status.max": Duration(100 * time.Millisecond)}), Invalid, "status.max = 109ms"},
		{"unmeasured", run(map[string]Duration{"mute.p99": Duration(time.Second)}), Unknown, "no mute was measured"},
		{"malformed", run(map[string]Duration{"status.q99": Duration(time.Second)}), Unknown, "want <command>.p<N>"},
	})
}

func TestCheckerSelection(t *testing.T) {
	if got, want := len(DefaultCheckers(nil)), len(CheckerNames()); got != want {
		t.Fatalf("DefaultCheckers(nil) = %d checkers, want %d", got, want)
	}
	for _, name := range []string{CheckPipelineModel, CheckCensusTruth, CheckAvailability} {
		if !slices.Contains(CheckerNames(), name) {
			t.Errorf("checker %s is not registered (have %v)", name, CheckerNames())
		}
	}
	cs := DefaultCheckers(&Scenario{Invariants: []string{CheckSLOs, CheckNoLeakedProcesses, "no_such"}})
	var names []string
	for _, c := range cs {
		names = append(names, c.Name())
	}
	want := []string{CheckNoLeakedProcesses, CheckSLOs, "no_such"}
	if len(names) != len(want) {
		t.Fatalf("names = %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("names = %v, want %v", names, want)
		}
	}
	if r := cs[2].Check(runData(nil)); r.Verdict != Unknown || r.Checker != "no_such" {
		t.Errorf("unknown invariant gave %+v, want an unknown verdict", r)
	}
}
