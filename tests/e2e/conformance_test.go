package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConformance walks every command and error row of PROTOCOL.md over raw
// frames against one server. Steps run in order and share the pipeline ids
// they create.
func TestConformance(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	var id, drained string // a running pipeline; one drained while muted

	type step struct {
		name string
		req  func(t *testing.T) map[string]any // may set up state first
		// want is the response status, or the error_type of a failure.
		want  string
		check func(t *testing.T, env envelope)
	}
	steps := []step{
		{"list_pipelines", func(t *testing.T) map[string]any { return map[string]any{"type": "list_pipelines"} }, "success",
			func(t *testing.T, env envelope) {
				wantNullID(t, env)
				if _, ok := env.Response["pipelines"].([]any); !ok {
					t.Errorf("pipelines is not an array: %v", env.Response["pipelines"])
				}
			}},
		{"list_pipelines ignores unknown keys", func(t *testing.T) map[string]any {
			return map[string]any{"type": "list_pipelines", "some_future_field": map[string]any{"x": 1}}
		}, "success", wantNullID},
		{"init", func(t *testing.T) map[string]any { return initRequest("synthetic://160x120") }, "success",
			func(t *testing.T, env envelope) { id = wantSomeID(t, env) }},
		{"init with a bad video_reference", func(t *testing.T) map[string]any { return initRequest("synthetic://0x10") }, "invalid_payload",
			func(t *testing.T, env envelope) { wantSomeID(t, env) }},
		{"list_pipelines shows the pipeline", func(t *testing.T) map[string]any { return map[string]any{"type": "list_pipelines"} }, "success",
			func(t *testing.T, env envelope) {
				ids := stringsOf(env.Response["pipelines"])
				if !slices.Contains(ids, id) {
					t.Errorf("pipelines %v lack %s", ids, id)
				}
			}},
		{"status", func(t *testing.T) map[string]any { return map[string]any{"type": "status", "pipeline_id": id} }, "success",
			func(t *testing.T, env envelope) {
				wantID(t, env, id)
				report, ok := env.Response["report"].(map[string]any)
				if !ok {
					t.Fatalf("report is not an object: %v", env.Response["report"])
				}
				for _, k := range []string{"video_source_status_updates", "latency_reports", "inference_throughput", "sources_metadata"} {
					if _, ok := report[k]; !ok {
						t.Errorf("report lacks %q: %v", k, report)
					}
				}
				checkReport(t, report)
			}},
		{"consume_result", func(t *testing.T) map[string]any {
			return map[string]any{"type": "consume_result", "pipeline_id": id, "excluded_fields": []string{}}
		}, "success", func(t *testing.T, env envelope) {
			wantID(t, env, id)
			checkConsume(t, env)
		}},
		{"mute", func(t *testing.T) map[string]any { return map[string]any{"type": "mute", "pipeline_id": id} }, "success",
			func(t *testing.T, env envelope) { wantID(t, env, id) }},
		{"resume", func(t *testing.T) map[string]any { return map[string]any{"type": "resume", "pipeline_id": id} }, "success",
			func(t *testing.T, env envelope) { wantID(t, env, id) }},
		{"consume_result on an empty buffer", func(t *testing.T) map[string]any {
			drained = wantSomeID(t, rawJSON(t, s.Addr, initRequest("synthetic://160x120")))
			rawJSON(t, s.Addr, map[string]any{"type": "mute", "pipeline_id": drained})
			// Muted, the pipeline adds no results; at most the default 64
			// buffered ones are popped before the buffer is empty.
			for range 80 {
				env := rawJSON(t, s.Addr, map[string]any{"type": "consume_result", "pipeline_id": drained})
				if out, _ := env.Response["outputs"].([]any); env.status() != "success" || len(out) == 0 {
					break
				}
			}
			return map[string]any{"type": "consume_result", "pipeline_id": drained, "excluded_fields": []string{}}
		}, "success", func(t *testing.T, env envelope) {
			for _, k := range []string{"outputs", "frames_metadata"} {
				if v, ok := env.Response[k].([]any); !ok || len(v) != 0 {
					t.Errorf("%s = %#v, want []", k, env.Response[k])
				}
			}
		}},
		{"terminate", func(t *testing.T) map[string]any { return map[string]any{"type": "terminate", "pipeline_id": id} }, "success",
			func(t *testing.T, env envelope) { wantID(t, env, id) }},
		{"status after terminate", func(t *testing.T) map[string]any { return map[string]any{"type": "status", "pipeline_id": id} }, "not_found",
			func(t *testing.T, env envelope) {
				want := "Could not find InferencePipeline with id=" + id + "."
				if got := env.Response["public_error_message"]; got != want {
					t.Errorf("public_error_message = %q, want %q", got, want)
				}
			}},
		{"list_pipelines after terminate", func(t *testing.T) map[string]any { return map[string]any{"type": "list_pipelines"} }, "success",
			func(t *testing.T, env envelope) {
				if ids := stringsOf(env.Response["pipelines"]); slices.Contains(ids, id) {
					t.Errorf("terminated %s still listed: %v", id, ids)
				}
			}},
	}
	for _, typ := range []string{"mute", "resume", "consume_result"} {
		steps = append(steps, step{typ + " unknown id", func(t *testing.T) map[string]any { return map[string]any{"type": typ, "pipeline_id": "nope"} },
			"not_found", func(t *testing.T, env envelope) {
				if got, want := env.Response["public_error_message"], "Could not find InferencePipeline with id=nope."; got != want {
					t.Errorf("public_error_message = %q, want %q", got, want)
				}
			}})
	}
	steps = append(steps, []step{
		{"terminate unknown id", func(t *testing.T) map[string]any { return map[string]any{"type": "terminate", "pipeline_id": "nope"} }, "invalid_payload", nil},
		{"missing type", func(t *testing.T) map[string]any { return map[string]any{"pipeline_id": "x"} }, "invalid_payload", nil},
		{"missing pipeline_id", func(t *testing.T) map[string]any { return map[string]any{"type": "status"} }, "invalid_payload", nil},
		{"unknown type", func(t *testing.T) map[string]any { return map[string]any{"type": "reboot_everything"} }, "invalid_payload", nil},
		{"webrtc", func(t *testing.T) map[string]any {
			req := initRequest("synthetic://160x120")
			req["type"] = "webrtc"
			req["webrtc_offer"] = map[string]any{"type": "offer", "sdp": "v=0"}
			return req
		}, "operation_error", func(t *testing.T, env envelope) {
			msg, _ := env.Response["error_message"].(string)
			pub, _ := env.Response["public_error_message"].(string)
			if !strings.Contains(msg+pub, "WebRTC") {
				t.Errorf("webrtc failure does not mention WebRTC: %v", env.Response)
			}
		}},
		{"chaos without --chaos", func(t *testing.T) map[string]any {
			return map[string]any{"type": "chaos", "pipeline_id": drained, "fault": "crash"}
		}, "invalid_payload", nil},
		{"inspect", func(t *testing.T) map[string]any { return map[string]any{"type": "inspect"} }, "success",
			func(t *testing.T, env envelope) { checkInspect(t, env, drained) }},
	}...)

	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) {
			env := rawJSON(t, s.Addr, st.req(t))
			got := env.status()
			if got == "failure" {
				got = env.errorType()
			}
			if got != st.want {
				t.Fatalf("got %s, want %s: %v", got, st.want, env.Response)
			}
			if st.check != nil {
				st.check(t, env)
			}
		}) {
			// Later steps depend on the state earlier ones built.
			t.FailNow()
		}
	}

	t.Run("body not JSON", func(t *testing.T) {
		env := rawCall(t, s.Addr, []byte("type=status&pipeline_id=1"))
		if env.status() != "failure" || env.errorType() != "invalid_payload" {
			t.Errorf("got %v, want invalid_payload", env.Response)
		}
	})
}

// pyTimeLayout is upstream's timestamp form: naive ISO-8601 with
// microseconds, as Python's datetime.isoformat() writes it.
const pyTimeLayout = "2006-01-02T15:04:05.000000"

// initRequest is an init request as the upstream client serialises it.
func initRequest(video string) map[string]any {
	return map[string]any{
		"type": "init",
		"video_configuration": map[string]any{
			"type": "VideoConfiguration", "video_reference": video,
			"source_buffer_filling_strategy": "DROP_OLDEST", "source_buffer_consumption_strategy": "EAGER",
		},
		"sink_configuration":     map[string]any{"type": "MemorySinkConfiguration", "results_buffer_size": 64},
		"predictions_queue_size": 512,
		"decoding_buffer_size":   64,
	}
}

func wantNullID(t *testing.T, env envelope) {
	t.Helper()
	if env.PipelineID != nil {
		t.Errorf("envelope pipeline_id = %q, want null", *env.PipelineID)
	}
}

func wantSomeID(t *testing.T, env envelope) string {
	t.Helper()
	if env.PipelineID == nil || *env.PipelineID == "" {
		t.Fatalf("envelope pipeline_id = %s, want a new id", env.Keys["pipeline_id"])
	}
	return *env.PipelineID
}

func wantID(t *testing.T, env envelope, id string) {
	t.Helper()
	if got := wantSomeID(t, env); got != id {
		t.Errorf("envelope pipeline_id = %q, want %q", got, id)
	}
}

func stringsOf(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// checkReport checks the documented report shape beyond its keys.
func checkReport(t *testing.T, report map[string]any) {
	t.Helper()
	states := []string{"NOT_STARTED", "INITIALISING", "RESTARTING", "RUNNING", "PAUSED", "MUTED", "TERMINATING", "ENDED", "ERROR"}
	for _, e := range listOf(report["video_source_status_updates"]) {
		if sev, _ := e["severity"].(float64); !slices.Contains([]float64{10, 20, 30, 40}, sev) {
			t.Errorf("status update severity %v is not a logging level: %v", e["severity"], e)
		}
		if _, err := time.Parse(pyTimeLayout, str(e["timestamp"])); err != nil {
			t.Errorf("status update timestamp: %v", err)
		}
	}
	if _, ok := report["inference_throughput"].(float64); !ok {
		t.Errorf("inference_throughput is not a number: %v", report["inference_throughput"])
	}
	sources := listOf(report["sources_metadata"])
	if len(sources) == 0 {
		t.Errorf("sources_metadata is empty")
	}
	for _, src := range sources {
		if !slices.Contains(states, str(src["state"])) {
			t.Errorf("source state %v is not one of %v", src["state"], states)
		}
		if _, ok := src["source_properties"].(map[string]any); !ok {
			t.Errorf("source_properties is not an object: %v", src)
		}
	}
}

// checkConsume checks one consume_result answer: arrays of at most one
// entry each, of the documented shapes.
func checkConsume(t *testing.T, env envelope) {
	t.Helper()
	outputs, ok1 := env.Response["outputs"].([]any)
	frames, ok2 := env.Response["frames_metadata"].([]any)
	if !ok1 || !ok2 {
		t.Fatalf("outputs/frames_metadata are not arrays: %v", env.Response)
	}
	if len(outputs) > 1 || len(frames) > 1 {
		t.Errorf("consume popped more than one entry: %d outputs, %d frames", len(outputs), len(frames))
	}
	for _, o := range outputs {
		if _, ok := o.(map[string]any); !ok {
			t.Errorf("output %v is not an object", o)
		}
	}
	for _, f := range listOf(env.Response["frames_metadata"]) {
		if _, err := time.Parse(pyTimeLayout, str(f["frame_timestamp"])); err != nil {
			t.Errorf("frame_timestamp: %v", err)
		}
		if _, ok := f["frame_id"].(float64); !ok {
			t.Errorf("frame_id is not a number: %v", f)
		}
		if v, ok := f["source_id"]; !ok {
			t.Errorf("frames_metadata entry lacks source_id: %v", f)
		} else if _, isNum := v.(float64); v != nil && !isNum {
			t.Errorf("source_id is neither an int nor null: %v", f)
		}
	}
}

// checkInspect checks the inspect extension's shape and that id is listed.
func checkInspect(t *testing.T, env envelope, id string) {
	t.Helper()
	wantNullID(t, env)
	states := []string{"idle", "starting", "running", "paused", "terminating", "failed"}
	found := false
	for _, p := range listOf(env.Response["pipelines"]) {
		found = found || p["pipeline_id"] == id
		if !slices.Contains(states, str(p["state"])) {
			t.Errorf("state %v is not one of %v", p["state"], states)
		}
		for _, k := range []string{"idle", "marked_for_removal"} {
			if _, ok := p[k].(bool); !ok {
				t.Errorf("%s is not a bool: %v", k, p)
			}
		}
		for _, k := range []string{"pid", "pgid"} {
			if n, _ := p[k].(float64); n <= 0 {
				t.Errorf("%s is not a positive number: %v", k, p)
			}
		}
		h, ok := p["health"].(map[string]any)
		if !ok {
			t.Errorf("health is not an object: %v", p)
			continue
		}
		for _, k := range []string{"consecutive_failures", "last_probe", "probe_timeout_seconds", "probe_interval_seconds"} {
			if _, ok := h[k]; !ok {
				t.Errorf("health lacks %q: %v", k, h)
			}
		}
	}
	if !found {
		t.Errorf("inspect does not list pipeline %s: %v", id, env.Response["pipelines"])
	}
}

func listOf(v any) []map[string]any {
	list, _ := v.([]any)
	var out []map[string]any
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }
