package worker

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/corral-dev/corral/manager/protocol"
)

func TestSyntheticPipelineReportsLiveValues(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://64x48?fps=200", nil, nil))

	h.poll("latency reports", h.measured)
	report := h.report()
	for _, key := range []string{"video_source_status_updates", "latency_reports", "inference_throughput", "sources_metadata"} {
		if _, ok := report[key]; !ok {
			t.Errorf("report has no %q", key)
		}
	}
	latency := report["latency_reports"].([]any)[0].(map[string]any)
	if latency["source_id"] != 0.0 {
		t.Errorf("latency source_id = %v, want 0", latency["source_id"])
	}
	for _, key := range []string{"frame_decoding_latency", "inference_latency", "e2e_latency"} {
		if v, ok := latency[key].(float64); !ok || v <= 0 || v > 5 {
			t.Errorf("%s = %v, want a measured number of seconds", key, latency[key])
		}
	}
	if tp, _ := report["inference_throughput"].(float64); tp <= 0 {
		t.Errorf("inference_throughput = %v, want > 0", report["inference_throughput"])
	}

	src := sourceOf(t, report)
	props := src["source_properties"].(map[string]any)
	wantProps := map[string]any{"width": 64.0, "height": 48.0, "total_frames": -1.0, "is_file": false, "fps": 200.0,
		"is_reconnectable": false, "timestamp_created": nil}
	for k, want := range wantProps {
		if v, ok := props[k]; !ok || v != want {
			t.Errorf("source_properties[%s] = %v, want %v", k, props[k], want)
		}
	}
	wantSource := map[string]any{
		"source_reference": "synthetic://64x48?fps=200", "buffer_size": 64.0, "state": stateRunning,
		"buffer_filling_strategy": "DROP_OLDEST", "buffer_consumption_strategy": "EAGER", "source_id": 0.0,
	}
	for k, want := range wantSource {
		if src[k] != want {
			t.Errorf("sources_metadata[0][%s] = %v, want %v", k, src[k], want)
		}
	}

	events := report["video_source_status_updates"].([]any)
	if !slices.Contains(eventTypes(report), "INFERENCE_THREAD_STARTED") {
		t.Errorf("events %v lack INFERENCE_THREAD_STARTED", eventTypes(report))
	}
	for _, e := range events {
		e := e.(map[string]any)
		if _, err := parsePyTime(e["timestamp"].(string)); err != nil {
			t.Errorf("event timestamp: %v", err)
		}
		if sev := e["severity"].(float64); sev != 10 && sev != 20 && sev != 30 && sev != 40 {
			t.Errorf("event severity %v", sev)
		}
		if _, ok := e["payload"].(map[string]any); !ok {
			t.Errorf("event payload %v is not an object", e["payload"])
		}
		if c := e["context"]; c != contextSource && c != contextPipeline {
			t.Errorf("event context %v", c)
		}
	}
}

func TestConsumeReturnsOneEntry(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://32x16?fps=200", nil, nil))
	var entries []map[string]any
	h.poll("two results", func() bool {
		fields := h.ok(protocol.TypeConsumeResult, map[string]any{"excluded_fields": []string{}})
		outputs, meta := fields["outputs"].([]any), fields["frames_metadata"].([]any)
		if len(outputs) != len(meta) || len(outputs) > 1 {
			t.Fatalf("consume returned %d outputs and %d metadata, want one of each or none", len(outputs), len(meta))
		}
		if len(outputs) == 1 {
			entry := outputs[0].(map[string]any)
			entry["meta"] = meta[0]
			entries = append(entries, entry)
		}
		return len(entries) == 2
	})
	out := entries[1]
	if out["width"] != 32.0 || out["height"] != 16.0 {
		t.Errorf("size = %vx%v, want 32x16", out["width"], out["height"])
	}
	if b := out["brightness"].(float64); b <= 0 || b >= 255 {
		t.Errorf("brightness = %v", b)
	}
	if c := out["contrast"].(float64); c <= 0 {
		t.Errorf("contrast = %v, want > 0 for the pattern", c)
	}
	if m, f := out["motion"].(float64), out["motion_fraction"].(float64); m <= 0 || f <= 0 || f > 1 {
		t.Errorf("motion = %v, motion_fraction = %v, want moving pattern", m, f)
	}
	meta := out["meta"].(map[string]any)
	if _, err := parsePyTime(meta["frame_timestamp"].(string)); err != nil {
		t.Errorf("frame_timestamp: %v", err)
	}
	first := entries[0]["meta"].(map[string]any)["frame_id"].(float64)
	if id := meta["frame_id"].(float64); id <= first {
		t.Errorf("frame ids %v then %v, want increasing", first, id)
	}
	if meta["source_id"] != 0.0 {
		t.Errorf("source_id = %v, want 0", meta["source_id"])
	}
}

func TestConsumeEmptyBufferAnswersEmptyLists(t *testing.T) {
	h := start(t, options{})
	// At 1 fps the first frame is a second away.
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=1", nil, nil))
	_, body := h.reply(h.send(protocol.TypeConsumeResult, nil))
	for _, want := range []string{`"outputs":[]`, `"frames_metadata":[]`, `"status":"success"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("reply %s lacks %s", body, want)
		}
	}
}

func TestConsumeExcludedFields(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=200", nil, nil))
	var out map[string]any
	h.poll("a result", func() bool {
		fields := h.ok(protocol.TypeConsumeResult, map[string]any{"excluded_fields": []string{"motion", "width"}})
		if outputs := fields["outputs"].([]any); len(outputs) > 0 {
			out = outputs[0].(map[string]any)
		}
		return out != nil
	})
	for _, gone := range []string{"motion", "width"} {
		if _, ok := out[gone]; ok {
			t.Errorf("excluded field %q still in output %v", gone, out)
		}
	}
	for _, kept := range []string{"brightness", "contrast", "motion_fraction", "height"} {
		if _, ok := out[kept]; !ok {
			t.Errorf("field %q missing from output %v", kept, out)
		}
	}
	h.failure(protocol.TypeConsumeResult, map[string]any{"excluded_fields": "motion"}, protocol.ErrTypeInvalidPayload)
}

func TestY4MFileEnds(t *testing.T) {
	path := writeY4M(t, 32, 24, 10, 100)
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest(path, nil, map[string]any{
		"sink_configuration": map[string]any{"results_buffer_size": 16},
	}))
	h.poll("end of inference", func() bool { return h.hasEvent("INFERENCE_THREAD_FINISHED") })

	report := h.report()
	src := sourceOf(t, report)
	props := src["source_properties"].(map[string]any)
	if props["is_file"] != true || props["total_frames"] != 10.0 || props["fps"] != 100.0 ||
		props["width"] != 32.0 || props["height"] != 24.0 {
		t.Errorf("source_properties = %v", props)
	}
	if src["state"] != stateEnded {
		t.Errorf("state = %v, want ENDED", src["state"])
	}
	if !slices.Contains(eventTypes(report), "VIDEO_CONSUMPTION_FINISHED") {
		t.Errorf("events %v lack VIDEO_CONSUMPTION_FINISHED", eventTypes(report))
	}
	if got, want := h.consumeAll(), []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(got, want) {
		t.Errorf("consumed frames %v, want %v", got, want)
	}
	// An ended pipeline keeps answering, but refuses mute and resume
	// as upstream's stream does.
	for _, typ := range []string{protocol.TypeMute, protocol.TypeResume} {
		if msg := h.failure(typ, nil, protocol.ErrTypeOperation); !strings.Contains(msg, "StreamState.ENDED") {
			t.Errorf("%s of an ended source: %q, want the state named", typ, msg)
		}
	}
	if state := sourceOf(t, h.report())["state"]; state != stateEnded {
		t.Errorf("state after mute = %v, want ENDED", state)
	}
	if report := h.report(); report[protocol.ReportKeyFinished] != true {
		t.Errorf("finished = %v after every result was consumed, want true", report[protocol.ReportKeyFinished])
	}
}

// The results sink keeps the newest results_buffer_size results whatever
// the filling strategy (upstream's InMemoryBufferSink).
func TestResultsSinkKeepsNewest(t *testing.T) {
	path := writeY4M(t, 16, 16, 10, 500)
	for _, strategy := range []string{protocol.FillDropOldest, protocol.FillDropLatest, protocol.FillWait} {
		t.Run(strategy, func(t *testing.T) {
			h := start(t, options{})
			h.ok(protocol.TypeInit, initRequest(path,
				map[string]any{"source_buffer_filling_strategy": strategy, "source_buffer_consumption_strategy": protocol.ConsumeLazy},
				map[string]any{"sink_configuration": map[string]any{"results_buffer_size": 3}}))
			h.poll("end of inference", func() bool { return h.hasEvent("INFERENCE_THREAD_FINISHED") })
			if got, want := h.consumeAll(), []int{8, 9, 10}; !slices.Equal(got, want) {
				t.Errorf("kept frames %v, want the newest %v", got, want)
			}
		})
	}
}

// The filling strategy applies to the decoded-frame buffer: with a model
// slower than the source and decoding_buffer_size 2, WAIT loses nothing,
// DROP_LATEST keeps the first frames, DROP_OLDEST the last.
func TestFillingStrategiesApplyToFrameBuffer(t *testing.T) {
	path := writeY4M(t, 16, 16, 12, 500)
	run := func(t *testing.T, filling, consumption string) []int {
		h := start(t, options{})
		h.ok(protocol.TypeInit, initRequest(path,
			map[string]any{"source_buffer_filling_strategy": filling, "source_buffer_consumption_strategy": consumption},
			map[string]any{
				"decoding_buffer_size":     2,
				"sink_configuration":       map[string]any{"results_buffer_size": 64},
				"processing_configuration": map[string]any{"workflows_parameters": map[string]any{"cost_ms": 40}},
			}))
		h.poll("end of inference", func() bool { return h.hasEvent("INFERENCE_THREAD_FINISHED") })
		return h.consumeAll()
	}
	if got := run(t, protocol.FillWait, protocol.ConsumeLazy); !slices.Equal(got, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}) {
		t.Errorf("WAIT/LAZY delivered %v, want every frame", got)
	}
	if got := run(t, protocol.FillDropLatest, protocol.ConsumeLazy); len(got) >= 12 || !slices.Contains(got, 2) || slices.Contains(got, 12) {
		t.Errorf("DROP_LATEST/LAZY delivered %v, want the first frames and not the last", got)
	}
	for _, consumption := range []string{protocol.ConsumeLazy, protocol.ConsumeEager} {
		if got := run(t, protocol.FillDropOldest, consumption); len(got) >= 12 || !slices.Contains(got, 12) {
			t.Errorf("DROP_OLDEST/%s delivered %v, want frames dropped and the last kept", consumption, got)
		}
	}
}

func TestMuteAndResume(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=200", nil, nil))
	h.ok(protocol.TypeMute, nil)
	if state := sourceOf(t, h.report())["state"]; state != stateMuted {
		t.Fatalf("state after mute = %v, want MUTED", state)
	}
	// Frames produced just before mute may still be on their way; once
	// the buffer stays empty for a while, nothing new is produced.
	var last int
	quiet := 0
	h.poll("the muted pipeline to go quiet", func() bool {
		ids := h.consumeAll()
		if len(ids) > 0 {
			last, quiet = ids[len(ids)-1], 0
		} else {
			quiet++
		}
		return quiet >= 20
	})
	h.ok(protocol.TypeResume, nil)
	if state := sourceOf(t, h.report())["state"]; state != stateRunning {
		t.Fatalf("state after resume = %v, want RUNNING", state)
	}
	h.poll("a frame after resume", func() bool {
		ids := h.consumeAll()
		return len(ids) > 0 && ids[0] > last
	})
	kinds := eventTypes(h.report())
	if n := len(slices.DeleteFunc(kinds, func(k string) bool { return k != "SOURCE_STATE_UPDATE" })); n < 4 {
		t.Errorf("want state updates for start, mute and resume, got %d", n)
	}
}

func TestConsumptionTimeoutEndsRun(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=50", nil, map[string]any{"consumption_timeout": 0.2}))
	if err := h.wait(); err != nil {
		t.Fatalf("Run = %v, want nil after the consumption timeout", err)
	}
	h.expectEOF()
}

func TestCostSlowsInference(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=100", nil, map[string]any{
		"processing_configuration": map[string]any{"workflows_parameters": map[string]any{"cost_ms": 20}},
	}))
	h.poll("latency reports", h.measured)
	latency := h.report()["latency_reports"].([]any)[0].(map[string]any)
	if v := latency["inference_latency"].(float64); v < 0.019 {
		t.Errorf("inference_latency = %v, want at least the 20 ms cost", v)
	}
}

// Issue 9: a status report must stay bounded however long the pipeline
// runs, since the manager caps worker replies
// (STREAM_MANAGER_MAX_WORKER_FRAME_BYTES) and fails a pipeline whose reply
// exceeds the cap. Every mute/resume pair adds two events; only the last
// maxEvents are kept, and event text is cut.
func TestStatusReportStaysBounded(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=50", nil, nil))
	size := func() int {
		body, err := json.Marshal(h.report())
		if err != nil {
			t.Fatal(err)
		}
		return len(body)
	}
	for range maxEvents {
		h.ok(protocol.TypeMute, nil)
		h.ok(protocol.TypeResume, nil)
	}
	full := size()
	if n := len(h.report()["video_source_status_updates"].([]any)); n != maxEvents {
		t.Fatalf("%d events after %d mute/resume pairs, want the last %d", n, maxEvents, maxEvents)
	}
	for range maxEvents {
		h.ok(protocol.TypeMute, nil)
		h.ok(protocol.TypeResume, nil)
	}
	// Latency averages and throughput change width; the events do not add.
	if later := size(); later > full+1024 || later > 16<<10 {
		t.Fatalf("report grew from %d to %d bytes over %d more mute/resume pairs, want it bounded (16 KiB)", full, later, maxEvents)
	}
	t.Logf("full report: %d bytes", full)

	var m monitor
	m.emit(severityError, "SOURCE_ERROR", contextSource, map[string]any{"error_message": strings.Repeat("é", 10*maxPayloadText)})
	msg := m.events[0].payload["error_message"].(string)
	if len(msg) > maxPayloadText+len("…") || !utf8.ValidString(msg) {
		t.Fatalf("error message kept %d bytes (valid UTF-8: %v), want at most %d", len(msg), utf8.ValidString(msg), maxPayloadText)
	}
}
