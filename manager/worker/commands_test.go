package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-dev/corral/manager/protocol"
)

func TestIdleWorker(t *testing.T) {
	h := start(t, options{})
	report := h.report()
	if report["state"] != stateNotStarted {
		t.Errorf("idle state = %v, want NOT_STARTED", report["state"])
	}
	for _, key := range []string{"video_source_status_updates", "latency_reports", "sources_metadata"} {
		if list, ok := report[key].([]any); !ok || len(list) != 0 {
			t.Errorf("idle %s = %v, want []", key, report[key])
		}
	}
	for _, typ := range []string{protocol.TypeConsumeResult, protocol.TypeMute, protocol.TypeResume} {
		h.failure(typ, nil, protocol.ErrTypeOperation)
	}
	h.failure("reboot", nil, protocol.ErrTypeInvalidPayload)
}

func TestInitRejectsBadRequests(t *testing.T) {
	dir := t.TempDir()
	notY4M := filepath.Join(dir, "bad.y4m")
	if err := os.WriteFile(notY4M, []byte("RIFF not a y4m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     map[string]any
		mention string // the message must contain it
	}{
		{"zero width", initRequest("synthetic://0x10", nil, nil), "synthetic://0x10"},
		{"too large", initRequest("synthetic://5000x10", nil, nil), "synthetic://5000x10"},
		{"no size", initRequest("synthetic://", nil, nil), "synthetic://"},
		{"zero fps", initRequest("synthetic://10x10?fps=0", nil, nil), "synthetic://10x10?fps=0"},
		{"bad fps", initRequest("synthetic://10x10?fps=fast", nil, nil), "synthetic://10x10?fps=fast"},
		{"unknown parameter", initRequest("synthetic://10x10?speed=2", nil, nil), "synthetic://10x10?speed=2"},
		{"filling strategy", initRequest("synthetic://8x8", map[string]any{"source_buffer_filling_strategy": "DROP_ALL"}, nil), "DROP_ALL"},
		{"consumption strategy", initRequest("synthetic://8x8", map[string]any{"source_buffer_consumption_strategy": "GREEDY"}, nil), "GREEDY"},
		{"max fps", initRequest("synthetic://8x8", map[string]any{"max_fps": 0}, nil), "max_fps"},
		{"zero results buffer", initRequest("synthetic://8x8", nil, map[string]any{"sink_configuration": map[string]any{"results_buffer_size": 0}}), "results_buffer_size"},
		{"negative results buffer", initRequest("synthetic://8x8", nil, map[string]any{"sink_configuration": map[string]any{"results_buffer_size": -2}}), "results_buffer_size"},
		{"negative timeout", initRequest("synthetic://8x8", nil, map[string]any{"consumption_timeout": -1}), "consumption_timeout"},
		{"malformed", map[string]any{"video_configuration": "synthetic://8x8"}, "malformed init"},
	}
	h := start(t, options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := h.failure(protocol.TypeInit, tt.req, protocol.ErrTypeInvalidPayload)
			if !strings.Contains(msg, tt.mention) {
				t.Errorf("message %q does not mention %q", msg, tt.mention)
			}
		})
	}
	// Refused inits leave the worker idle and ready for a good one.
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8", nil, nil))
}

func TestSecondInitFails(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8", nil, nil))
	h.failure(protocol.TypeInit, initRequest("synthetic://8x8", nil, nil), protocol.ErrTypeOperation)
}

func TestTerminateCommand(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=100", nil, nil))
	h.ok(protocol.TypeTerminate, nil)
	if err := h.wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	h.expectEOF()
}

func TestTerminateSignal(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=100", nil, nil))
	h.term <- struct{}{}
	if err := h.wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	h.expectEOF() // no reply to a signal
}

func TestChannelEOFEndsRun(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=100", nil, nil))
	h.inW.Close() // the manager is gone
	if err := h.wait(); err != nil {
		t.Fatalf("Run = %v, want nil when the manager is gone", err)
	}
}

func TestContextCancelEndsRun(t *testing.T) {
	h := start(t, options{})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=100", nil, nil))
	h.cancel()
	if err := h.wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func TestMalformedCommandsAreAnswered(t *testing.T) {
	h := start(t, options{})
	h.sendRaw([]byte("not json"))
	rep, _ := h.reply("")
	if rep.Response.ErrorType != protocol.ErrTypeInvalidPayload {
		t.Errorf("not-JSON command: %+v, want invalid_payload", rep.Response)
	}
	// The worker goes on serving.
	h.ok(protocol.TypeStatus, nil)
}

func TestRunNeedsChannel(t *testing.T) {
	if err := Run(t.Context(), Config{}); err == nil {
		t.Fatal("Run without In and Out succeeded")
	}
}

func TestClipTextKeepsBothEnds(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", 100) + "/bad.y4m"
	got := clipText(long)
	if len(got) != 67 || !strings.HasPrefix(got, "/tmp/ddd") || !strings.HasSuffix(got, "/bad.y4m") || !strings.Contains(got, "...") {
		t.Errorf("clipText(%d bytes) = %q, want the first and last 32 bytes around ...", len(long), got)
	}
	if got := clipText("short"); got != "short" {
		t.Errorf("clipText(short) = %q", got)
	}
}
