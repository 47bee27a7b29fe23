package worker

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// errorOf waits for source id to reach ERROR and returns the error_message
// of its failure event.
func (h *harness) errorOf(id int) string {
	h.t.Helper()
	var msg string
	h.poll("a source in ERROR", func() bool {
		report := h.report()
		src := report["sources_metadata"].([]any)[id].(map[string]any)
		if src["state"] != stateError {
			return false
		}
		for _, e := range report["video_source_status_updates"].([]any) {
			e := e.(map[string]any)
			payload := e["payload"].(map[string]any)
			if e["severity"] == float64(severityError) && payload["source_id"] == float64(id) {
				msg, _ = payload["error_message"].(string)
			}
		}
		return msg != ""
	})
	return msg
}

// Upstream validates the payload, not the source: init succeeds, and a
// source that cannot be opened shows in status as ERROR with the reason.
func TestUnopenableSourcesReportError(t *testing.T) {
	dir := t.TempDir()
	notY4M := filepath.Join(dir, "bad.y4m")
	if err := os.WriteFile(notY4M, []byte("RIFF not a y4m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noFFmpeg := filepath.Join(dir, "no-such-ffmpeg")
	tests := []struct {
		name    string
		ref     any
		mention string
	}{
		{"missing file", filepath.Join(dir, "none.y4m"), "no such file"},
		{"not a y4m", notY4M, "YUV4MPEG2"},
		{"rtsp without ffmpeg", "rtsp://127.0.0.1:1/cam", "ffmpeg is not installed"},
		{"mp4 without ffmpeg", "/videos/clip.mp4", "ffmpeg is not installed"},
		{"camera without ffmpeg", 0, "ffmpeg is not installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, options{ffmpeg: noFFmpeg})
			h.ok(protocol.TypeInit, initRequest(tt.ref, nil, nil))
			if msg := h.errorOf(0); !strings.Contains(msg, tt.mention) {
				t.Errorf("error_message %q does not mention %q", msg, tt.mention)
			}
			report := h.report()
			if props := sourceOf(t, report)["source_properties"]; props != nil {
				t.Errorf("source_properties = %v, want null for a source never opened", props)
			}
			if msg := h.failure(protocol.TypeMute, nil, protocol.ErrTypeOperation); !strings.Contains(msg, "StreamState.ERROR") {
				t.Errorf("mute of an errored source: %q", msg)
			}
			h.poll("the pipeline to finish", func() bool { return h.report()[protocol.ReportKeyFinished] == true })
		})
	}
}

// A list names one source per element; results carry source_id by position.
func TestSourceList(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest([]any{"synthetic://16x8?fps=100", "synthetic://8x8?fps=100"}, nil, nil))
	h.poll("both sources measured", func() bool {
		for _, l := range h.report()["latency_reports"].([]any) {
			if l.(map[string]any)["e2e_latency"] == nil {
				return false
			}
		}
		return true
	})
	report := h.report()
	sources := report["sources_metadata"].([]any)
	if len(sources) != 2 || len(report["latency_reports"].([]any)) != 2 {
		t.Fatalf("report has %d sources, %d latency reports; want 2 each", len(sources), len(report["latency_reports"].([]any)))
	}
	for i, s := range sources {
		if s := s.(map[string]any); s["source_id"] != float64(i) || s["state"] != stateRunning {
			t.Errorf("source %d = %v", i, s)
		}
	}
	seen := map[float64]bool{}
	h.poll("results of both sources", func() bool {
		fields := h.ok(protocol.TypeConsumeResult, nil)
		for _, m := range fields["frames_metadata"].([]any) {
			seen[m.(map[string]any)["source_id"].(float64)] = true
		}
		return seen[0] && seen[1]
	})
}

// Before the first frame every source has a latency report of nulls.
func TestLatencyReportsAreNullBeforeTheFirstFrame(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=0.5", nil, nil))
	latency := h.report()["latency_reports"].([]any)
	if len(latency) != 1 {
		t.Fatalf("latency_reports = %v, want one per source", latency)
	}
	l := latency[0].(map[string]any)
	for _, k := range []string{"frame_decoding_latency", "inference_latency", "e2e_latency"} {
		if v, ok := l[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
}

// The frame watchdog reports a frozen source; one that cannot reconnect
// goes to ERROR and marks the report stalled, and recovers when frames
// come again.
func TestWatchdogReportsFrozenSource(t *testing.T) {
	h := start(t, options{chaos: true, stall: 150 * time.Millisecond})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=100", nil, nil))
	h.poll("frames", h.measured)
	h.ok(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosFreezeSource})
	h.poll("a stall report", func() bool {
		r := h.report()
		return r[protocol.ReportKeyStalled] == true && sourceOf(t, r)["state"] == stateError
	})
	if !h.hasEvent(protocol.EventSourceStalled) {
		t.Fatalf("events %v lack %s", eventTypes(h.report()), protocol.EventSourceStalled)
	}
	h.ok(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosHeal})
	h.poll("recovery", func() bool {
		r := h.report()
		return r[protocol.ReportKeyStalled] == false && sourceOf(t, r)["state"] == stateRunning
	})
	if kinds := eventTypes(h.report()); !slices.Contains(kinds, protocol.EventSourceStallRecovered) {
		t.Errorf("events %v lack %s", kinds, protocol.EventSourceStallRecovered)
	}
}

func TestStallLimitScalesWithFPS(t *testing.T) {
	if got := stallLimit(time.Second, 30); got != time.Second {
		t.Errorf("30 fps: %v, want the base", got)
	}
	if got := stallLimit(time.Second, 0.5); got != 6*time.Second {
		t.Errorf("0.5 fps: %v, want 3 frame intervals", got)
	}
}
