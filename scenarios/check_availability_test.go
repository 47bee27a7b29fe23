package scenarios

import (
	"strings"
	"testing"
)

func TestAvailability(t *testing.T) {
	// Two pipelines; statuses every 100 ms from 100 ms to 10 s (100 per
	// pipeline), of which fail(id, at) fail.
	run := func(slo float64, fail func(id string, at int) bool, extra func(h *hist)) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.initAs(0, "p1", OpOK, "")
			h.initAs(0, "p2", OpOK, "")
			if extra != nil {
				extra(h)
			}
			for at := 100; at <= 10000; at += 100 {
				for _, id := range []string{"p1", "p2"} {
					if fail(id, at) {
						h.call(at, 5, "client-1", "status", id, OpFail, nil, "operation_error: Pipeline "+id+" did not answer status within 1s.")
					} else {
						h.call(at, 5, "client-1", "status", id, OpOK, statusReport("RUNNING"), "")
					}
				}
			}
			d := runData(h)
			d.Scenario.Availability = slo
			return d
		}
	}
	never := func(string, int) bool { return false }
	// p2 fails from 2 s to 4 s: 21 of 200.
	p2Fails := func(id string, at int) bool { return id == "p2" && at >= 2000 && at <= 4000 }
	runCheckCases(t, checkAvailability, []checkCase{
		{"all succeed", run(0, never, nil), Valid, "100.00% of 200 commands"},
		{"an untouched pipeline fails", run(0, p2Fails, nil), Invalid, "89.50% of 200 commands to untouched pipelines succeeded (objective 99.00%)"},
		{"the failures list their ops", run(0, p2Fails, nil), Invalid, "status p2 at 2.000s): fail by op"},
		{"a looser objective", run(0.85, p2Fails, nil), Valid, "(objective 85.00%)"},
		{"failures under a fault are not counted", run(0, p2Fails, func(h *hist) {
			h.fault(1900, 4100, "hang_queue", "p2", nil)
		}), Valid, "100.00% of"},
		{"the recovery bound after the heal is not counted", run(0, func(id string, at int) bool {
			return id == "p2" && at >= 2000 && at <= 6000 // heal at 2.1s + removal bound 4.7s
		}, func(h *hist) { h.fault(1900, 2100, "hang_queue", "p2", nil) }), Valid, ""},
		{"a pipeline gone after a crash is not counted", run(0, func(id string, at int) bool { return id == "p2" && at >= 200 },
			func(h *hist) { h.fault(150, 0, "crash", "p2", nil) }), Valid, "100.00% of 101 commands"},
		{"refusals while a fault holds connections open are the limits checker's", run(0, p2Fails, func(h *hist) {
			h.call(1900, 1, Nemesis, "abandon_request", "p1", OpOK, map[string]any{"requests": 14.0}, "")
		}), Valid, "100.00% of"},
		{"after the shutdown nothing is counted", func() *RunData {
			d := run(0, func(_ string, at int) bool { return at > 5000 }, nil)()
			d.Shutdown = ShutdownRecord{Signal: "SIGTERM", Requested: ms(5000), Exited: ms(5100)}
			return d
		}, Valid, ""},
		{"a refused mute of a muted stream is allowed", run(0, never, func(h *hist) {
			for at := 50; at < 90; at += 4 {
				h.call(at, 1, "client-2", "mute", "p1", OpOK, map[string]any{}, "")
				h.call(at+2, 1, "client-2", "mute", "p1", OpFail, nil, "operation_error: Cannot mute a stream in state MUTED.")
			}
		}), Valid, "100.00% of 210 commands"},
		{"a refused mute of a running stream is not", run(0.999, never, func(h *hist) {
			h.call(50, 1, "client-2", "mute", "p1", OpFail, nil, "operation_error: Cannot mute a stream in state RUNNING.")
		}), Invalid, "99.50% of 201 commands"},
		{"no pipeline, nothing to judge", func() *RunData {
			h := &hist{}
			h.call(100, 5, "client-1", "status", placeholder(1), OpFail, nil, "not_found: no")
			return runData(h)
		}, Valid, "no command reached"},
	})
}

func TestAvailabilityClientFaults(t *testing.T) {
	run := func(f string, injected, healed map[string]any) func() *RunData {
		return func() *RunData {
			h := &hist{}
			h.call(1000, 1, Nemesis, f, "", OpOK, injected, "")
			if healed != nil {
				h.call(1001, 300, Nemesis, healPrefix+f, "", OpOK, healed, "")
			}
			return runData(h)
		}
	}
	runCheckCases(t, checkAvailability, []checkCase{
		{"burst answered", run("client_burst", map[string]any{"clients": 50.0, "done": false},
			map[string]any{"clients": 50.0, "done": true, "answered": 50.0, "unanswered": 0.0, "max_latency_ms": 80.0}), Valid, ""},
		{"burst clients without an answer", run("client_burst", map[string]any{"clients": 50.0, "done": false},
			map[string]any{"clients": 50.0, "done": true, "answered": 43.0, "unanswered": 7.0, "errors": map[string]any{"EOF": 7.0}}),
			Invalid, "7 of 50 clients got no answer to a complete list_pipelines"},
		{"burst answered late", run("client_burst", map[string]any{"clients": 50.0},
			map[string]any{"clients": 50.0, "done": true, "answered": 50.0, "unanswered": 0.0, "max_latency_ms": 4000.0}),
			Invalid, "answered after 4000ms, bound 1.2s"},
		{"burst outcome never recorded", run("client_burst", map[string]any{"clients": 50.0}, nil), Unknown, "never recorded"},
		{"malformed frames answered", run("malformed_frame", map[string]any{"cases": 2.0},
			map[string]any{"done": true, "answers": map[string]any{"not_json": "invalid_payload", "empty": "invalid_payload"}}), Valid, ""},
		{"a malformed frame without an answer", run("malformed_frame", map[string]any{"cases": 2.0},
			map[string]any{"done": true, "answers": map[string]any{"not_json": "invalid_payload", "empty": "closed without a frame"}}),
			Invalid, `malformed frame "empty" got no answer`},
		{"a malformed frame never sent owes nothing", run("malformed_frame", map[string]any{"cases": 1.0},
			map[string]any{"done": true, "answers": map[string]any{"empty": "not sent: context canceled"}}), Valid, ""},
		{"oversized header refused", run("oversized_frame", map[string]any{},
			map[string]any{"done": true, "answer": "failure", "error_type": "invalid_payload"}), Valid, ""},
		{"oversized header unanswered", run("oversized_frame", map[string]any{},
			map[string]any{"done": true, "answer": "no frame: i/o timeout"}), Invalid, "the oversized header got no answer"},
		{"a client fault the catalogue does not know", run("client_renamed", map[string]any{}, map[string]any{"done": true}),
			Unknown, `fault "client_renamed" is not in the fault catalogue`},
		{"an oversized header owes no answer without a frame cap", func() *RunData {
			d := run("oversized_frame", map[string]any{}, map[string]any{"done": true, "answer": "closed without a frame"})()
			d.Profile, _ = ProfileByName(ProfileUpstream)
			return d
		}, Valid, ""},
		{"a serial target held by the harness's own oversized header answers a burst late", func() *RunData {
			h := &hist{}
			h.call(900, 1, Nemesis, "oversized_frame", "", OpOK, map[string]any{}, "")
			h.call(1000, 1, Nemesis, "client_burst", "", OpOK, map[string]any{"clients": 10.0}, "")
			h.call(1001, 300, Nemesis, healPrefix+"client_burst", "", OpOK,
				map[string]any{"clients": 10.0, "done": true, "answered": 10.0, "unanswered": 0.0, "max_latency_ms": 3500.0}, "")
			h.call(901, 4000, Nemesis, healPrefix+"oversized_frame", "", OpOK, map[string]any{"done": true, "answer": "closed without a frame"}, "")
			d := runData(h)
			d.Profile, _ = ProfileByName(ProfileUpstream)
			return d
		}, Valid, ""},
		{"a stall owes no answer", run("client_stall", map[string]any{},
			map[string]any{"done": true, "bytes_sent": 2.0, "dropped_by_server": true}), Valid, ""},
	})
}

func TestScenarioAvailability(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, ""}, {0.95, ""}, {1, ""}, {1.5, "availability: must be a fraction in (0, 1]"}, {-0.1, "availability"}} {
		sc := &Scenario{Name: "a", Availability: tc.v}
		err := sc.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("availability %v: %v", tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("availability %v: error %v, want %q", tc.v, err, tc.want)
		}
	}
	if got := (&Scenario{}).withDefaults().Availability; got != DefaultAvailability {
		t.Errorf("default availability = %v, want %v", got, DefaultAvailability)
	}
	sc, err := Parse(strings.NewReader("name: a\navailability: 0.9\n"))
	if err != nil || sc.Availability != 0.9 {
		t.Errorf("Parse: %v, availability %v", err, sc.Availability)
	}
}
