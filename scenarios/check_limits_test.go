package scenarios

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

const refusedText = "internal_error: Too many open connections (STREAM_MANAGER_MAX_CONNECTIONS=8); retry later."

func withRSS(p launchProc, mb uint64) launchProc { p.RSS = mb << 20; return p }

func TestCheckLimitsRAM(t *testing.T) {
	sample := func(at int, phase string, managerMB uint64, workersMB ...uint64) CensusSample {
		s := CensusSample{Time: ms(at), Phase: phase, ManagerRSS: managerMB << 20}
		for i, w := range workersMB {
			s.Procs = append(s.Procs, withRSS(proc(100+i, "S"), w))
		}
		return s
	}
	run := func(census ...CensusSample) func() *RunData {
		return func() *RunData {
			d := runData(&hist{})
			d.Bounds.MaxRAMMB, d.Bounds.WorkerRAMMB = 100, 16
			d.Census = census
			return d
		}
	}
	runCheckCases(t, checkLimits, []checkCase{
		{name: "within the limit", data: run(sample(100, PhaseChaos, 50, 20, 20), sample(600, PhaseChaos, 52, 20, 20, 20)),
			verdict: Valid, want: "peak 112.0 MiB"},
		// 100 MiB + the largest worker (20) = 120: 121 is one MiB too many.
		{name: "past the limit plus one worker", data: run(sample(100, PhaseChaos, 41, 20, 20, 20, 20)),
			verdict: Invalid, want: "above the limit 100 MiB + one worker 20.0 MiB"},
		{name: "zombies weigh nothing", data: run(CensusSample{Time: ms(100), Phase: PhaseChaos, ManagerRSS: 50 << 20,
			Procs: []launchProc{withRSS(proc(7, "Z"), 500), withRSS(proc(8, "S"), 20)}}), verdict: Valid},
		{name: "after shutdown the pid is the harness's", data: run(sample(100, PhaseChaos, 50, 20), sample(900, PhaseFinal, 500)),
			verdict: Valid},
		{name: "manager not measured", data: run(sample(100, PhaseChaos, 0, 20)), verdict: Unknown, want: "no census sample measured"},
		{name: "no limit", data: func() *RunData { d := run(sample(100, PhaseChaos, 5000))(); d.Bounds.MaxRAMMB = 0; return d },
			verdict: Valid, want: "no RAM limit set"},
	})
}

func TestCheckLimitsConnections(t *testing.T) {
	// abandon builds: an abandon_request fired at 500 ms and healed (its
	// resets done) at 700 ms; then client-1's status at refuseAt is refused
	// while inFlight other requests are open.
	abandon := func(refuseAt, inFlight int, extra func(h *hist)) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.call(500, 1, Nemesis, protocol.FaultAbandonRequest, "p1", OpOK, map[string]any{"sent": 8}, "")
			h.call(700, 1, Nemesis, healPrefix+protocol.FaultAbandonRequest, "p1", OpOK, map[string]any{"reset": 8}, "")
			var open []int
			for i := range inFlight {
				open = append(open, h.invoke(refuseAt-50, "client-2", protocol.TypeStatus, "p2", nil))
				_ = i
			}
			if extra != nil {
				extra(h)
			}
			h.call(refuseAt, 2, "client-1", protocol.TypeStatus, "p3", OpFail, nil, refusedText)
			for _, inv := range open {
				h.complete(inv, refuseAt+100, OpOK, map[string]any{"report": map[string]any{}}, "")
			}
			d := runData(h)
			d.Bounds.MaxConnections = 8
			return d
		}
	}
	runCheckCases(t, checkLimits, []checkCase{
		{name: "slots held for gone clients", data: abandon(1000, 1, nil), verdict: Invalid, want: "held for clients already gone"},
		{name: "the cap really was full", data: abandon(1000, 6, nil), verdict: Valid, want: "1 refusals judged"},
		{name: "during the abandon its clients are alive", data: abandon(600, 0, nil), verdict: Valid},
		{name: "a reset slot is given back within the lag", data: abandon(760, 0, nil), verdict: Valid},
		{name: "a burst holds live connections", data: abandon(1000, 0, func(h *hist) {
			h.call(900, 1, Nemesis, protocol.FaultClientBurst, "", OpOK, nil, "")
			h.call(1200, 1, Nemesis, healPrefix+protocol.FaultClientBurst, "", OpOK, nil, "")
		}), verdict: Valid},
		{name: "an answer read just before still holds its slot", data: abandon(1000, 5, func(h *hist) {
			h.call(900, 60, "client-3", protocol.TypeStatus, "p2", OpOK, nil, "")
		}), verdict: Valid},
		// Invoked before the abandon, refused within it: the connection
		// may have arrived while the abandoned ones were alive.
		{name: "arrived during the abandon", data: func() *RunData {
			d := abandon(1000, 0, nil)()
			for i := range d.Ops {
				if o := &d.Ops[i]; o.Process == "client-1" && o.Type == OpInvoke {
					o.Time = ms(450)
				}
			}
			return d
		}, verdict: Valid},
		{name: "no cap known", data: func() *RunData { d := abandon(1000, 0, nil)(); d.Bounds.MaxConnections = 0; return d },
			verdict: Valid, want: "connection cap not known"},
	})
}

func TestCheckLimitsProbeClamp(t *testing.T) {
	// testBounds: health timeout 100 ms; floor 40 ms here.
	run := func(timeouts ...float64) func() *RunData {
		return func() *RunData {
			d := runData(&hist{})
			d.Bounds.ProbeTimeoutFloor = 40 * time.Millisecond
			for i, to := range timeouts {
				e := entry("p1", 11, protocol.StateRunning)
				e.Health.ProbeTimeout = to
				d.Inspects = append(d.Inspects, inspectAt(100*(i+1), []string{"p1"}, e))
			}
			return d
		}
	}
	runCheckCases(t, checkLimits, []checkCase{
		{name: "inside", data: run(0.1, 0.04, 0.0625), verdict: Valid, want: "3 of 3 reports inside [40ms, 100ms]"},
		{name: "above the ceiling", data: run(0.1, 0.2), verdict: Invalid, want: "probe timeout 200ms, outside its clamp [40ms, 100ms]"},
		{name: "below the floor", data: run(0.01), verdict: Invalid, want: "outside its clamp"},
		{name: "a floor above the ceiling is the ceiling", data: func() *RunData {
			d := run(0.1)()
			d.Bounds.ProbeTimeoutFloor = time.Second
			return d
		}, verdict: Valid},
	})
}
