package scenarios

import (
	"testing"

	"github.com/corral-dev/corral/manager/protocol"
)

// invalidInitAs records an init_invalid request by client-2, answered typ
// at at+5 ms with id in its envelope, as sendInvalidInit records it.
func (h *hist) invalidInitAs(at int, id, typ string, value any, errText string) int {
	inv := h.invoke(at, "client-2", protocol.TypeInit, "", map[string]any{invalidInitField: invalidInitRemoves + " removed"})
	c := h.complete(inv, at+5, typ, value, errText)
	h.ops[c].PipelineID = id
	return c
}

const refusedInvalid = "invalid_payload: unsupported video_reference null"

// A refused init_invalid is judged like any failed init: its id listed
// later is a phantom; not listed, nothing to say.
func TestInvalidInitPhantom(t *testing.T) {
	build := func(f func(h *hist)) func() *RunData {
		return func() *RunData { h := &hist{}; f(h); return runData(h) }
	}
	runCheckCases(t, checkPipelineModel, []checkCase{
		{"refused and listed later: a phantom", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.invalidInitAs(100, "p9", OpFail, nil, refusedInvalid)
			h.call(3000, 5, "client-1", protocol.TypeListPipelines, "", OpOK, listing("p1", "p9"), "")
		}), Invalid, "pipeline p9: phantom pipeline: its init failed (op 3, invalid_payload)"},
		{"refused and never listed", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.invalidInitAs(100, "p9", OpFail, nil, refusedInvalid)
			h.call(3000, 5, "client-1", protocol.TypeListPipelines, "", OpOK, listing("p1"), "")
		}), Valid, "2 pipelines"},
	})
	runCheckCases(t, checkAvailability, []checkCase{
		{"a refused init_invalid is no unavailability", build(func(h *hist) {
			h.initAs(0, "p1", OpOK, "")
			h.invalidInitAs(100, "p9", OpFail, nil, refusedInvalid)
			h.call(200, 5, "client-1", protocol.TypeStatus, "p1", OpOK, statusReport("RUNNING"), "")
		}), Valid, "100.00% of 1 commands"},
	})
}

// A server that answers an init_invalid with success accepted a payload
// its model must refuse: responses_match says so; a refusal matches.
func TestInvalidInitAnsweredOK(t *testing.T) {
	build := func(typ string, value any, errText string) func() *RunData {
		return func() *RunData { h := &hist{}; h.invalidInitAs(100, "p9", typ, value, errText); return runData(h) }
	}
	runCheckCases(t, checkResponsesMatch, []checkCase{
		{"answered ok", build(OpOK, map[string]any{}, ""), Invalid, "its payload was deliberately invalid (video_configuration removed)"},
		{"refused", build(OpFail, nil, refusedInvalid), Valid, "all 0 ok answers"},
	})
}

// init_invalid is a mix key that sends an init: a target with init carries
// it, and its request lacks only video_configuration.
func TestInvalidInitRequest(t *testing.T) {
	up, err := ProfileByName("upstream")
	if err != nil {
		t.Fatal(err)
	}
	plan := markApplicability([]PlanEntry{invalidInitEntry(PlanEntry{Kind: KindCommand, F: MixInitInvalid, Process: "client-1", Target: 2})}, up)
	if !plan[0].sendsInvalidInit() || plan[0].Target != 0 {
		t.Errorf("planned init_invalid %+v, want an init for no pipeline", plan[0])
	}
	if plan[0].NotApplicable != "" {
		t.Errorf("init_invalid not applicable to upstream: %s", plan[0].NotApplicable)
	}
	full := up.initFields("synthetic://8x8", nil)
	bad := invalidInitFields(full)
	if _, ok := full[invalidInitRemoves]; !ok {
		t.Fatalf("the template itself lost %s: %v", invalidInitRemoves, full)
	}
	if _, ok := bad[invalidInitRemoves]; ok || len(bad) != len(full)-1 {
		t.Errorf("invalid init %v, want the template %v without %s", bad, full, invalidInitRemoves)
	}
	s := Defaults()
	s.Name = "x"
	s.Mix = map[string]int{MixInitInvalid: 1, protocol.TypeStatus: 1}
	if err := s.Validate(); err != nil {
		t.Errorf("mix with init_invalid: %v", err)
	}
}

// A mix with init_invalid plans one in the warm-up, after every
// pipeline's init, so it is judged before any fault; without it, none.
func TestInvalidInitPlannedInWarmUp(t *testing.T) {
	s := Defaults()
	s.Name = "x"
	tl := TimelineOf(s.withDefaults())
	count := func(mix map[string]int) (warm int) {
		s.Mix = mix
		lastInit := Duration(-1)
		for _, e := range PlanRun(&s, 1) {
			switch {
			case e.sendsInvalidInit() && e.At < Duration(tl.Chaos):
				if e.At <= lastInit {
					t.Errorf("warm-up init_invalid at %s, before a pipeline's init at %s", e.At.D(), lastInit.D())
				}
				warm++
			case e.F == protocol.TypeInit && e.At < Duration(tl.Chaos):
				lastInit = max(lastInit, e.At)
			}
		}
		return warm
	}
	if n := count(map[string]int{protocol.TypeStatus: 1, MixInitInvalid: 1}); n != 1 {
		t.Errorf("%d init_invalid in the warm-up, want 1", n)
	}
	if n := count(map[string]int{protocol.TypeStatus: 1}); n != 0 {
		t.Errorf("%d init_invalid in the warm-up without it in the mix, want 0", n)
	}
}
