package scenarios

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// initAs records a client init answered typ at at+5 ms with id in its
// envelope (init answers carry the new id, on failure too).
func (h *hist) initAs(at int, id, typ, errText string) int {
	inv := h.invoke(at, "client-1", "init", "", nil)
	c := h.complete(inv, at+5, typ, map[string]any{}, errText)
	h.ops[c].PipelineID = id
	return c
}

func statusReport(state string) map[string]any {
	return map[string]any{"report": map[string]any{"sources_metadata": []any{map[string]any{"state": state}}}}
}

func listing(ids ...string) map[string]any {
	xs := []any{}
	for _, id := range ids {
		xs = append(xs, id)
	}
	return map[string]any{"pipelines": xs}
}

// runStart is the wall-clock start of the hand-written runs that need one.
var runStart = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// frames builds a consume_result answer; each frame is (id, capture time in
// ms since runStart).
func frames(fs ...[2]int) map[string]any {
	var md, outs []any
	for _, f := range fs {
		md = append(md, map[string]any{"frame_id": float64(f[0]), "source_id": 0.0,
			"frame_timestamp": runStart.Add(time.Duration(f[1]) * time.Millisecond).Format(time.RFC3339Nano)})
		outs = append(outs, map[string]any{"brightness": 1.0})
	}
	return map[string]any{"outputs": outs, "frames_metadata": md}
}

const notFound = "not_found: Could not find InferencePipeline with id=p1."

func TestPipelineModelLifecycle(t *testing.T) {
	build := func(f func(h *hist)) func() *RunData {
		return func() *RunData { h := &hist{}; f(h); return runData(h) }
	}
	runCheckCases(t, checkPipelineModel, []checkCase{
		{"init, commands, terminate, not_found", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(100, 5, "client-1", "status", "p1", OpOK, statusReport("RUNNING"), "")
			h.call(200, 5, "client-2", "list_pipelines", "", OpOK, listing("p1"), "")
			h.call(300, 50, "client-1", "terminate", "p1", OpOK, map[string]any{}, "")
			h.call(400, 5, "client-2", "status", "p1", OpFail, nil, notFound)
			h.call(500, 5, "client-2", "list_pipelines", "", OpOK, listing(), "")
		}), Valid, "1 pipelines"},
		{"success after terminate ok", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(300, 50, "client-1", "terminate", "p1", OpOK, map[string]any{}, "")
			h.call(400, 5, "client-2", "status", "p1", OpOK, statusReport("RUNNING"), "")
		}), Invalid, "terminate answered ok (op 3, by 0.350s) but later status answered ok (op 5"},
		{"a status in flight across the terminate may succeed", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(300, 50, "client-1", "terminate", "p1", OpOK, map[string]any{}, "")
			h.call(299, 2, "client-2", "status", "p1", OpOK, statusReport("RUNNING"), "")
		}), Valid, ""},
		{"phantom: a failed init still listed", build(func(h *hist) {
			h.initAs(0, "p9", OpFail, "invalid_payload: bad video_reference")
			h.call(3000, 5, "client-2", "list_pipelines", "", OpOK, listing("p9"), "")
		}), Invalid, "phantom pipeline: its init failed (op 1, invalid_payload)"},
		{"phantom seen by the sampler's list", func() *RunData {
			h := &hist{}
			h.initAs(0, "p9", OpFail, "invalid_payload: bad video_reference")
			d := runData(h)
			d.Inspects = []InspectSample{inspectAt(5000, []string{"p9"})}
			return d
		}, Invalid, "listed by the list_pipelines of the inspect sample at 5.000s"},
		{"a failed init that is gone", build(func(h *hist) {
			h.initAs(0, "p9", OpFail, "invalid_payload: bad video_reference")
			h.call(3000, 5, "client-2", "list_pipelines", "", OpOK, listing(), "")
		}), Valid, ""},
		{"an id no init created answers not_found", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(100, 5, "client-2", "status", placeholder(2), OpFail, nil, notFound)
		}), Valid, ""},
		{"an id no init created answers ok", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(100, 5, "client-2", "status", placeholder(2), OpOK, statusReport("RUNNING"), "")
		}), Invalid, "was never created by an init: status answered ok"},
		{"listed id no init created", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(300, 5, "client-2", "list_pipelines", "", OpOK, listing("p1", "ghost"), "")
		}), Invalid, "pipeline ghost was never created by an init"},
		{"an init with a lost answer may have created it", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(10, 3000, "client-1", "init", "", OpInfo, nil, "i/o timeout")
			h.call(300, 5, "client-2", "list_pipelines", "", OpOK, listing("p1", "ghost"), "")
		}), Valid, ""},
		{"pipelines an init storm made are not the model's", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(100, 1, Nemesis, "init_storm", "", OpOK, map[string]any{"done": false}, "")
			h.call(300, 5, "client-2", "list_pipelines", "", OpOK, listing("p1", "s1", "s2", "s3"), "")
			h.call(900, 1, Nemesis, healPrefix+"init_storm", "", OpOK,
				map[string]any{"done": true, "pipelines": []any{"s1", "s2"}, "unanswered": 1.0}, "")
		}), Valid, ""},
		{"ids from before the first init belong to someone else", build(func(h *hist) {
			h.call(0, 5, "client-2", "list_pipelines", "", OpOK, listing("theirs"), "")
			h.initAs(100, "p1", OpOK, "")
			h.call(300, 5, "client-2", "list_pipelines", "", OpOK, listing("theirs", "p1"), "")
		}), Valid, ""},
		{"not_found with no cause", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(100, 5, "client-1", "status", "p1", OpOK, statusReport("RUNNING"), "")
			h.call(1000, 5, "client-1", "status", "p1", OpFail, nil, notFound)
		}), Invalid, "answered not_found (op 5, by 1.005s) but nothing could have removed it: last seen alive at 0.100s"},
		{"not_found after a crash", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.fault(500, 0, "crash", "p1", map[string]any{"pid": 101})
			h.call(1000, 5, "client-1", "status", "p1", OpFail, nil, notFound)
		}), Valid, ""},
		{"not_found long after a fault the pipeline survived", build(func(h *hist) {
			// removal bound: 1.5s + 1s + 2s + 0.2s = 4.7s after the heal at 600.
			h.initAs(0, "p1", OpOK, "")
			h.call(500, 1, Nemesis, "slow_probe", "p1", OpOK, nil, "")
			h.ops[len(h.ops)-2].Value = map[string]any{"for_seconds": 0.1}
			h.call(600, 1, Nemesis, healPrefix+"slow_probe", "p1", OpOK, nil, "")
			h.call(6000, 5, "client-1", "status", "p1", OpOK, statusReport("RUNNING"), "")
			h.call(7000, 5, "client-1", "status", "p1", OpFail, nil, notFound)
		}), Invalid, "nothing could have removed it"},
		{"not_found after the manager failed commands", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(100, 1000, "client-1", "status", "p1", OpFail, nil, "operation_error: Pipeline p1 did not answer status within 1s.")
			h.call(2000, 5, "client-1", "status", "p1", OpFail, nil, notFound)
		}), Valid, ""},
		{"list lacks a live pipeline", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.call(500, 5, "client-2", "list_pipelines", "", OpOK, listing(), "")
		}), Invalid, "not listed by op 3"},
		{"list sent before the init's answer may lack it", build(func(h *hist) {
			h.call(0, 5, "client-2", "list_pipelines", "", OpOK, listing(), "")
			h.initAs(1, "p1", OpOK, "")
		}), Valid, ""},
		{"list lacks it while its terminate is in flight", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			inv := h.invoke(400, "client-1", "terminate", "p1", nil)
			h.call(500, 5, "client-2", "list_pipelines", "", OpOK, listing(), "")
			h.complete(inv, 700, OpOK, map[string]any{}, "")
		}), Valid, ""},
		{"not_found after the shutdown", func() *RunData {
			h := &hist{}
			h.initAs(0, "p1", OpOK, "")
			h.call(1000, 5, "client-1", "status", "p1", OpFail, nil, notFound)
			d := runData(h)
			d.Shutdown = ShutdownRecord{Signal: "SIGTERM", Requested: ms(900), Exited: ms(950)}
			return d
		}, Valid, ""},
		{"a fault the catalogue does not know", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.fault(100, 0, "renamed_fault", "p1", nil)
		}), Unknown, `fault "renamed_fault" is not in the fault catalogue`},
		{"phantom seen by a list poll (no inspect)", func() *RunData {
			h := &hist{}
			h.initAs(0, "p9", OpFail, "invalid_payload: bad video_reference")
			d := runData(h)
			d.Polls = []PollSample{{Time: ms(3000), Listed: []string{"p9"}}}
			return d
		}, Invalid, "phantom pipeline: its init failed (op 1, invalid_payload) but listed by the list_pipelines poll at 3.000s"},
		{"a status poll answered not_found with no cause", func() *RunData {
			h := &hist{}
			h.initAs(0, "p1", OpOK, "")
			d := runData(h)
			d.Polls = []PollSample{{Time: ms(1000), Listed: []string{"p1"}, Status: []StatusPoll{{PipelineID: "p1", Answered: true, ErrorType: "not_found"}}}}
			return d
		}, Invalid, "answered not_found to the status poll at 1.000s"},
		{"not_found after its worker left the census", func() *RunData {
			h := &hist{}
			h.initAs(0, "p1", OpOK, "")
			h.call(1000, 5, "client-1", "status", "p1", OpFail, nil, notFound)
			d := runData(h)
			d.Inspects = []InspectSample{inspectAt(100, []string{"p1"}, entry("p1", 101, protocol.StateRunning))}
			d.Census = []CensusSample{{Time: ms(200), Procs: []launchProc{proc(101, "S")}}, {Time: ms(700)}}
			return d
		}, Valid, ""},
	})
}

func TestPipelineModelStates(t *testing.T) {
	build := func(f func(h *hist)) func() *RunData {
		return func() *RunData { h := &hist{}; h.initAs(0, "p1", OpOK, ""); f(h); return runData(h) }
	}
	ok := map[string]any{}
	runCheckCases(t, checkPipelineModel, []checkCase{
		{"mute then MUTED, resume then RUNNING", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("MUTED"), "")
			h.call(300, 10, "client-1", "resume", "p1", OpOK, ok, "")
			h.call(400, 10, "client-2", "status", "p1", OpOK, statusReport("RUNNING"), "")
		}), Valid, ""},
		{"RUNNING after an ok'd mute", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("RUNNING"), "")
		}), Invalid, "op 5 (status sent at 0.200s) reports RUNNING, but the model allows only muted: op 3 (mute) was answered after op 1 (init"},
		{"RUNNING with a resume in flight", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			inv := h.invoke(190, "client-3", "resume", "p1", nil)
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("RUNNING"), "")
			h.complete(inv, 230, OpOK, ok, "")
		}), Valid, ""},
		{"RUNNING with a resume sent during the status", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			st := h.invoke(200, "client-2", "status", "p1", nil)
			h.call(205, 1, "client-3", "resume", "p1", OpOK, ok, "")
			h.complete(st, 210, OpOK, statusReport("RUNNING"), "")
		}), Valid, ""},
		{"MUTED with no mute ever sent", build(func(h *hist) {
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("MUTED"), "")
		}), Invalid, "no mute was ever sent"},
		{"PAUSED counts as muted", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("PAUSED"), "")
		}), Valid, ""},
		{"a timed-out mute may take effect later", build(func(h *hist) {
			h.call(100, 1000, "client-1", "mute", "p1", OpFail, nil, "operation_error: Pipeline p1 did not answer mute within 1s.")
			h.call(1500, 10, "client-2", "status", "p1", OpOK, statusReport("MUTED"), "")
		}), Valid, ""},
		{"a later ok command settles a timed-out mute", build(func(h *hist) {
			h.call(100, 1000, "client-1", "mute", "p1", OpFail, nil, "operation_error: Pipeline p1 did not answer mute within 1s.")
			h.call(1500, 10, "client-1", "resume", "p1", OpOK, ok, "")
			h.call(1600, 10, "client-2", "status", "p1", OpOK, statusReport("MUTED"), "")
		}), Invalid, "reports MUTED"},
		{"a mute refused with not_found never happened", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpFail, nil, notFound)
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("MUTED"), "")
		}), Invalid, "reports MUTED"},
		{"states are not judged under a fault", build(func(h *hist) {
			h.call(50, 1, Nemesis, "stale_responses", "p1", OpOK, map[string]any{"for_seconds": 3.0}, "")
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("RUNNING"), "")
		}), Valid, ""},
		{"ENDED is compatible with anything", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(200, 10, "client-2", "status", "p1", OpOK, statusReport("ENDED"), "")
		}), Valid, ""},
	})
}

// noClock builds a run against a target whose clock the harness does not
// share (frame capture times are not comparable), with pipeline p1.
func noClock(f func(h *hist)) func() *RunData {
	return func() *RunData {
		h := &hist{}
		h.initAs(0, "p1", OpOK, "")
		f(h)
		d := runData(h)
		d.Start = runStart
		return d
	}
}

func TestPipelineModelConsume(t *testing.T) {
	build := func(f func(h *hist)) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.initAs(0, "p1", OpOK, "")
			h.initAs(10, "p2", OpOK, "")
			f(h)
			d := runData(h)
			d.Embedded, d.Start = true, runStart
			return d
		}
	}
	ok := map[string]any{}
	runCheckCases(t, checkPipelineModel, []checkCase{
		{"increasing frames", build(func(h *hist) {
			h.call(100, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{1, 50}), "")
			h.call(200, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{2, 120}), "")
			h.call(210, 10, "client-1", "consume_result", "p1", OpOK, frames(), "")
			h.call(300, 10, "client-2", "consume_result", "p2", OpOK, frames([2]int{1, 60}), "")
		}), Valid, ""},
		{"frame ids go backwards", build(func(h *hist) {
			h.call(100, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{5, 50}), "")
			h.call(200, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{3, 40}), "")
		}), Invalid, "op 7 (consume_result sent at 0.200s) returned frame 3, not after frame 5 that op 5 returned"},
		{"concurrent consumes may finish out of order", build(func(h *hist) {
			a := h.invoke(100, "client-1", "consume_result", "p1", nil)
			h.call(150, 50, "client-2", "consume_result", "p1", OpOK, frames([2]int{4, 40}), "")
			h.complete(a, 300, OpOK, frames([2]int{5, 50}), "")
		}), Valid, ""},
		{"a frame consumed twice", build(func(h *hist) {
			a := h.invoke(100, "client-1", "consume_result", "p1", nil)
			h.call(150, 50, "client-2", "consume_result", "p1", OpOK, frames([2]int{4, 40}), "")
			h.complete(a, 300, OpOK, frames([2]int{4, 40}), "")
		}), Invalid, "already returned by op"},
		{"a frame of another pipeline", build(func(h *hist) {
			h.call(100, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{7, 70}), "")
			h.call(200, 10, "client-2", "consume_result", "p2", OpOK, frames([2]int{7, 70}), "")
		}), Invalid, "which op 5 returned for pipeline p1: it belongs to another pipeline"},
		{"captured before its pipeline existed", build(func(h *hist) {
			h.initAs(2000, "p3", OpOK, "")
			h.call(2100, 10, "client-1", "consume_result", "p3", OpOK, frames([2]int{1, 900}), "")
		}), Invalid, "before its init was sent"},
		{"captured after the answer", build(func(h *hist) {
			h.call(100, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{1, 2000}), "")
		}), Invalid, "after the answer came"},
		{"buffered frames from before the mute", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(2000, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{1, 50}), "")
		}), Valid, ""},
		{"frames captured while muted", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(2000, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{9, 1500}), "")
		}), Invalid, "frame 9 captured at 1.500s while the pipeline was muted"},
		{"frames captured after a resume", build(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(1000, 10, "client-1", "resume", "p1", OpOK, ok, "")
			h.call(2000, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{9, 1500}), "")
		}), Valid, ""},
		{"a drained muted buffer refills", noClock(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(1500, 10, "client-1", "consume_result", "p1", OpOK, frames(), "")
			h.call(2000, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{9, 1900}), "")
		}), Invalid, "returned frame 9 while the pipeline was muted and op 5 had found its buffer empty"},
		{"a drained buffer refills after a resume", noClock(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(1500, 10, "client-1", "consume_result", "p1", OpOK, frames(), "")
			h.call(1700, 10, "client-1", "resume", "p1", OpOK, ok, "")
			h.call(2000, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{9, 1900}), "")
		}), Valid, ""},
		{"frames in flight at the mute may follow an early empty answer", noClock(func(h *hist) {
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(200, 10, "client-1", "consume_result", "p1", OpOK, frames(), "")
			h.call(300, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{9, 90}), "")
		}), Valid, ""},
		{"capture times are not judged without a shared clock", func() *RunData {
			h := &hist{}
			h.initAs(0, "p1", OpOK, "")
			h.call(100, 10, "client-1", "mute", "p1", OpOK, ok, "")
			h.call(2000, 10, "client-1", "consume_result", "p1", OpOK, frames([2]int{9, 1500}), "")
			d := runData(h)
			d.Start = runStart // an external target: Embedded false
			return d
		}, Valid, ""},
	})
}

// TestPipelineModelLongHistory: the model's pass stays linear in the history's
// length (a regression to a quadratic pass shows as a timeout of the
// package's tests, not as a timing assertion here).
func TestPipelineModelLongHistory(t *testing.T) {
	h := &hist{}
	h.initAs(0, "p1", OpOK, "")
	for i := range 5000 {
		at := 10 + i*10
		switch i % 4 {
		case 0:
			h.call(at, 2, "client-1", "mute", "p1", OpOK, map[string]any{}, "")
		case 1:
			h.call(at, 2, "client-1", "status", "p1", OpOK, statusReport("MUTED"), "")
		case 2:
			h.call(at, 2, "client-1", "resume", "p1", OpOK, map[string]any{}, "")
		default:
			h.call(at, 2, "client-1", "consume_result", "p1", OpOK, frames([2]int{i, at}), "")
		}
	}
	if r := checkPipelineModel(runData(h)); r.Verdict != Valid {
		t.Fatalf("verdict %s: %s\n%v", r.Verdict, r.Summary, r.Details)
	}
}
