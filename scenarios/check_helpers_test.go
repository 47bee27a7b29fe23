package scenarios

import (
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// testBounds: hang bound = 2*200ms + 3*(100ms+200ms) + 200ms = 1.5s;
// crash bound = 1.2s; request bound for status = 1.2s.
var testBounds = Bounds{
	Grace: time.Second, Join: 2 * time.Second, QueueTimeout: time.Second,
	HealthInterval: 200 * time.Millisecond, HealthTimeout: 100 * time.Millisecond,
	MaxHealthFailures: 3, Epsilon: 200 * time.Millisecond,
}

// hist builds a history by hand; times are in milliseconds since start.
type hist struct{ ops []Op }

func ms(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }

func (h *hist) invoke(at int, process, f, pipelineID string, value any) int {
	h.ops = append(h.ops, Op{Index: len(h.ops), Time: ms(at), Process: process, Type: OpInvoke, F: f,
		PipelineID: pipelineID, Value: value, Invoke: -1})
	return len(h.ops) - 1
}

func (h *hist) complete(inv, at int, typ string, value any, errText string) int {
	o := h.ops[inv]
	h.ops = append(h.ops, Op{Index: len(h.ops), Time: ms(at), Process: o.Process, Type: typ, F: o.F,
		PipelineID: o.PipelineID, Value: value, Error: errText, Invoke: inv})
	return len(h.ops) - 1
}

// call records an invoke and its completion.
func (h *hist) call(at, took int, process, f, pipelineID, typ string, value any, errText string) int {
	return h.complete(h.invoke(at, process, f, pipelineID, nil), at+took, typ, value, errText)
}

// fault records a nemesis injection (ok) at at and, when healAt > 0, its heal.
func (h *hist) fault(at, healAt int, f, pipelineID string, observed map[string]any) {
	h.call(at, 1, Nemesis, f, pipelineID, OpOK, observed, "")
	if healAt > 0 {
		h.call(healAt, 1, Nemesis, healPrefix+f, pipelineID, OpOK, nil, "")
	}
}

func entry(id string, pid int, state protocol.State) protocol.PipelineInfo {
	return protocol.PipelineInfo{PipelineID: id, State: state, Pid: pid, Pgid: pid,
		Health: protocol.HealthInfo{ProbeInterval: 0.2, ProbeTimeout: 0.1}}
}

func inspectAt(at int, listed []string, entries ...protocol.PipelineInfo) InspectSample {
	return InspectSample{Time: ms(at), Pipelines: entries, Listed: listed}
}

func proc(pid int, state string) launch.ProcInfo {
	return launch.ProcInfo{Pid: pid, PPid: 1, Pgid: pid, Sid: pid, State: state, Comm: "corral"}
}

func runData(h *hist) *RunData {
	d := &RunData{Scenario: &Scenario{Name: "test"}, Seed: 7, Bounds: testBounds, Replay: "corral run test --seed 7"}
	if h != nil {
		d.Ops = h.ops
	}
	return d
}

// checkCase is one table row: a run and the verdict one checker must give,
// with a fragment its details or summary must contain.
type checkCase struct {
	name    string
	data    func() *RunData
	verdict string
	want    string
}

func runCheckCases(t *testing.T, check func(*RunData) Result, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := check(tc.data())
			if r.Verdict != tc.verdict {
				t.Fatalf("verdict = %s, want %s\nsummary: %s\ndetails:\n  %s", r.Verdict, tc.verdict, r.Summary, strings.Join(r.Details, "\n  "))
			}
			all := r.Summary + "\n" + strings.Join(r.Details, "\n")
			if tc.want != "" && !strings.Contains(all, tc.want) {
				t.Errorf("result does not mention %q:\n%s", tc.want, all)
			}
		})
	}
}

type launchProc = launch.ProcInfo
