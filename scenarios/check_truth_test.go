package scenarios

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

const (
	exitedText  = "operation_error: Pipeline p1: its worker exited during status."
	stoppedText = "operation_error: Pipeline p1 is being terminated."
	timeoutText = "operation_error: Pipeline p1 did not answer status within 1s."
)

// truthRun is a run with pipeline p1 (pid 101) that inspect shows running
// with a fresh probe every 200 ms from 0 to until, and a census every
// 500 ms in which pid 101 is alive while alive(t) says so.
func truthRun(until int, alive func(ms int) bool, f func(h *hist, d *RunData)) func() *RunData {
	return func() *RunData {
		h := &hist{}
		h.initAs(0, "p1", OpOK, "")
		d := runData(h)
		d.Start = runStart
		for t := 0; t <= until; t += 200 {
			e := entry("p1", 101, protocol.StateRunning)
			probe := runStart.Add(time.Duration(t) * time.Millisecond)
			e.Health.LastProbe = &probe
			d.Inspects = append(d.Inspects, inspectAt(t, []string{"p1"}, e))
		}
		for t := 0; t <= until; t += 500 {
			s := CensusSample{Time: ms(t), Procs: []launchProc{}}
			if alive(t) {
				s.Procs = append(s.Procs, proc(101, "S"))
			}
			d.Census = append(d.Census, s)
		}
		f(h, d)
		d.Ops = h.ops
		return d
	}
}

func aliveUntil(end int) func(int) bool { return func(t int) bool { return t < end } }

func TestCensusTruthClaims(t *testing.T) {
	none := func(*hist, *RunData) {}
	runCheckCases(t, checkCensusTruth, []checkCase{
		{"no census", func() *RunData {
			d := truthRun(1000, aliveUntil(5000), none)()
			d.Census = nil
			return d
		}, Unknown, "no process census"},
		{"no inspect", func() *RunData {
			d := truthRun(1000, aliveUntil(5000), none)()
			d.Inspects = nil
			return d
		}, Unknown, "no inspect samples"},
		{"quiet run", truthRun(3000, aliveUntil(5000), none), Valid, "0 claims"},
		{"worker exited: true", truthRun(4000, aliveUntil(600), func(h *hist, d *RunData) {
			h.call(550, 5, "client-1", "status", "p1", OpFail, nil, exitedText)
		}), Valid, "1 claims"},
		{"worker exited: false (the frame-size phantom)", truthRun(4000, aliveUntil(5000), func(h *hist, d *RunData) {
			h.call(550, 5, "client-1", "status", "p1", OpFail, nil, exitedText)
		}), Invalid, "its worker pid 101 was alive in the census at 2.000s, 1.445s later (bound 1.2s)"},
		{"being terminated: dead within grace + join", truthRun(5000, aliveUntil(3500), func(h *hist, d *RunData) {
			h.call(500, 5, "client-1", "status", "p1", OpFail, nil, stoppedText)
		}), Valid, ""},
		{"being terminated: alive after grace + join", truthRun(5000, aliveUntil(9000), func(h *hist, d *RunData) {
			h.call(500, 5, "client-1", "status", "p1", OpFail, nil, stoppedText)
		}), Invalid, "it is being terminated"},
		{"not_found while the worker lives", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			h.call(500, 5, "client-1", "status", "p1", OpFail, nil, notFound)
		}), Invalid, "(it does not exist)"},
		{"a claim with no census after its bound", truthRun(1000, aliveUntil(9000), func(h *hist, d *RunData) {
			h.call(900, 5, "client-1", "status", "p1", OpFail, nil, exitedText)
		}), Valid, "1 claims could not be judged"},
		{"a reused pid is not judged", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			d.Inspects = append(d.Inspects, inspectAt(4000, nil, entry("p2", 101, protocol.StateRunning)))
			h.call(500, 5, "client-1", "status", "p1", OpFail, nil, exitedText)
		}), Valid, ""},
	})
}

func TestCensusTruthPhantom(t *testing.T) {
	failing := func(from, to int, text string) func(h *hist, d *RunData) {
		return func(h *hist, d *RunData) {
			for at := from; at <= to; at += 250 {
				h.call(at, 5, "client-1", "status", "p1", OpFail, nil, text)
			}
		}
	}
	runCheckCases(t, checkCensusTruth, []checkCase{
		{"failures shorter than the hang bound", truthRun(4000, aliveUntil(9000), failing(1000, 2000, timeoutText)), Valid, ""},
		{"failing for longer than the hang bound while shown running", truthRun(4000, aliveUntil(9000), failing(500, 3500, timeoutText)),
			Invalid, "pipeline p1 is a phantom: ops 3..27 answered every command with a failure for 3.005s (13 failures"},
		{"a success breaks the run", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			failing(500, 1500, timeoutText)(h, d)
			h.call(1600, 5, "client-1", "status", "p1", OpOK, statusReport("RUNNING"), "")
			failing(1700, 3000, timeoutText)(h, d)
		}), Valid, ""},
		{"failures under a fault are explained", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			h.fault(400, 3600, "hang_queue", "p1", nil)
			failing(500, 3500, timeoutText)(h, d)
		}), Valid, ""},
		{"a marked pipeline being stopped is not a phantom yet", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			for i := range d.Inspects {
				d.Inspects[i].Pipelines[0].MarkedForRemoval = true
			}
			failing(500, 3500, timeoutText)(h, d)
		}), Valid, ""},
		{"failing past the phantom bound, marked or not", truthRun(8000, aliveUntil(9000), func(h *hist, d *RunData) {
			for i := range d.Inspects {
				d.Inspects[i].Pipelines[0].MarkedForRemoval = true
			}
			failing(500, 7000, stoppedText)(h, d) // phantom bound 1.5s + 1s + 2s + 0.2s
		}), Invalid, "its worker pid 101 alive in the census at 5.500s"},
	})
}

func TestCensusTruthHealthLoop(t *testing.T) {
	noProbe := func(h *hist, d *RunData) {
		for i := range d.Inspects {
			d.Inspects[i].Pipelines[0].Health.LastProbe = nil
		}
	}
	staleProbe := func(h *hist, d *RunData) {
		at := runStart.Add(100 * time.Millisecond)
		for i := range d.Inspects {
			d.Inspects[i].Pipelines[0].Health.LastProbe = &at
		}
	}
	runCheckCases(t, checkCensusTruth, []checkCase{
		{"fresh probes", truthRun(4000, aliveUntil(9000), func(*hist, *RunData) {}), Valid, ""},
		{"never probed", truthRun(4000, aliveUntil(9000), noProbe), Invalid,
			"inspect at 0.800s shows it running with no probe since it started running; no command was in flight for 800ms from 0.000s, longer than 2 x interval + probe timeout (700ms)"},
		{"probes stopped", truthRun(4000, aliveUntil(9000), staleProbe), Invalid, "last probe at 0.100s"},
		{"commands in flight stand in for probes", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			staleProbe(h, d)
			for at := 0; at < 4000; at += 300 {
				h.call(at, 290, "client-1", "consume_result", "p1", OpOK, frames(), "")
			}
		}), Valid, ""},
		{"marked pipelines are not probed", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			noProbe(h, d)
			for i := range d.Inspects {
				d.Inspects[i].Pipelines[0].MarkedForRemoval = true
			}
		}), Valid, ""},
		{"not judged after the shutdown", truthRun(4000, aliveUntil(9000), func(h *hist, d *RunData) {
			noProbe(h, d)
			d.Shutdown = ShutdownRecord{Signal: "SIGTERM", Requested: ms(600), Exited: ms(700)}
		}), Valid, ""},
	})
}

func TestCensusTruthWithoutInspect(t *testing.T) {
	upstream, err := ProfileByName(ProfileUpstream)
	if err != nil {
		t.Fatal(err)
	}
	foreign := func(pids map[string]int, f func(h *hist, d *RunData)) func() *RunData {
		return func() *RunData {
			d := truthRun(4000, aliveUntil(9000), f)()
			d.Inspects, d.Profile, d.WorkerPids = nil, upstream, pids
			return d
		}
	}
	runCheckCases(t, checkCensusTruth, []checkCase{
		{"pids from the census around each init", foreign(map[string]int{"p1": 101}, func(*hist, *RunData) {}),
			Valid, "health-loop rule does not apply"},
		{"a false claim, pid from the census", foreign(map[string]int{"p1": 101}, func(h *hist, d *RunData) {
			h.call(500, 5, "client-1", "status", "p1", OpFail, nil, notFound)
		}), Invalid, "its worker pid 101 was alive"},
		{"no worker pid known", foreign(nil, func(*hist, *RunData) {}), Unknown, "no worker pid is known"},
	})
}
