package worker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

func chaos(h *harness, fault string, params map[string]any) {
	h.t.Helper()
	req := map[string]any{"fault": fault}
	for k, v := range params {
		req[k] = v
	}
	h.ok(protocol.TypeChaos, req)
}

func TestChaosDisabled(t *testing.T) {
	h := start(t, options{})
	msg := h.failure(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosCrash}, protocol.ErrTypeInvalidPayload)
	if msg != "chaos is not enabled in this manager" {
		t.Errorf("message = %q", msg)
	}
	h.ok(protocol.TypeStatus, nil) // and nothing crashed
}

func TestChaosRejectsBadFaults(t *testing.T) {
	h := start(t, options{chaos: true})
	if msg := h.failure(protocol.TypeChaos, map[string]any{"fault": "meteor"}, protocol.ErrTypeInvalidPayload); !strings.Contains(msg, "meteor") {
		t.Errorf("message %q does not name the fault", msg)
	}
	h.failure(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosSlowProbe, "delay_seconds": -1}, protocol.ErrTypeInvalidPayload)
	h.failure(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosCrash, "exit_code": 300}, protocol.ErrTypeInvalidPayload)
}

func TestStaleResponses(t *testing.T) {
	h := start(t, options{chaos: true})
	chaos(h, protocol.ChaosStaleResponses, nil)
	for range 2 {
		id := h.send(protocol.TypeStatus, nil)
		f := h.next()
		var stale protocol.WorkerReply
		if err := json.Unmarshal(f.body, &stale); err != nil {
			t.Fatalf("stale reply is not JSON: %v", err)
		}
		if stale.RequestID == id {
			t.Fatalf("first frame answers %s; want a stale reply first", id)
		}
		if rep, _ := h.reply(id); !rep.Response.OK() {
			t.Fatalf("real reply failed: %v", rep.Response.Err())
		}
	}
}

func TestGarbageOutput(t *testing.T) {
	h := start(t, options{chaos: true})
	chaos(h, protocol.ChaosGarbageOutput, nil)
	id := h.send(protocol.TypeStatus, nil)
	f := h.next()
	if f.err != nil || json.Valid(f.body) {
		t.Fatalf("want a well-framed non-JSON frame, got %q (%v)", f.body, f.err)
	}
	h.reply(id)
}

func TestCrashWithoutDelay(t *testing.T) {
	h := start(t, options{chaos: true})
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8?fps=100", nil, nil))
	h.send(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosCrash, "exit_code": 3})
	var exit *ExitError
	if err := h.wait(); !errors.As(err, &exit) || exit.Code != 3 {
		t.Fatalf("Run = %v, want exit status 3", err)
	}
	if code := <-h.exits; code != 3 {
		t.Errorf("Config.Exit got %d, want 3", code)
	}
	h.expectEOF() // a crash does not reply
}

func TestCrashWithDelay(t *testing.T) {
	h := start(t, options{chaos: true})
	chaos(h, protocol.ChaosCrash, map[string]any{"delay_seconds": 0.05})
	var exit *ExitError
	if err := h.wait(); !errors.As(err, &exit) || exit.Code != 1 {
		t.Fatalf("Run = %v, want exit status 1", err)
	}
}

func TestIgnoreSigterm(t *testing.T) {
	h := start(t, options{chaos: true})
	chaos(h, protocol.ChaosIgnoreSigterm, nil)
	h.term <- struct{}{}
	h.ok(protocol.TypeTerminate, nil)
	h.ok(protocol.TypeStatus, nil) // still serving after both
	if !h.running() {
		t.Fatal("Run returned although terminations are ignored")
	}
	chaos(h, protocol.ChaosHeal, nil)
	h.term <- struct{}{}
	if err := h.wait(); err != nil {
		t.Fatalf("Run = %v after a healed SIGTERM, want nil", err)
	}
}

func TestHangQueueWithDuration(t *testing.T) {
	h := start(t, options{chaos: true})
	const hang = 300 * time.Millisecond
	began := time.Now()
	chaos(h, protocol.ChaosHangQueue, map[string]any{"duration_seconds": hang.Seconds()})
	h.ok(protocol.TypeStatus, nil)
	if took := time.Since(began); took < hang-50*time.Millisecond {
		t.Errorf("status answered after %v, during a %v hang", took, hang)
	}
}

func TestHangQueueForever(t *testing.T) {
	h := start(t, options{chaos: true})
	chaos(h, protocol.ChaosHangQueue, nil)
	h.send(protocol.TypeStatus, nil)
	select {
	case f := <-h.frames:
		t.Fatalf("a hung worker answered: %q", f.body)
	case <-time.After(100 * time.Millisecond):
	}
	h.term <- struct{}{} // a hung queue still obeys signals
	if err := h.wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestSlowProbeAndHeal(t *testing.T) {
	h := start(t, options{chaos: true})
	const delay = 200 * time.Millisecond
	chaos(h, protocol.ChaosSlowProbe, map[string]any{"delay_seconds": delay.Seconds()})
	began := time.Now()
	h.ok(protocol.TypeStatus, nil)
	if took := time.Since(began); took < delay {
		t.Errorf("slow status took %v, want at least %v", took, delay)
	}
	chaos(h, protocol.ChaosGarbageOutput, nil)
	chaos(h, protocol.ChaosStaleResponses, nil)
	chaos(h, protocol.ChaosHeal, nil)
	began = time.Now()
	h.ok(protocol.TypeStatus, nil) // the first frame is the reply
	if took := time.Since(began); took >= delay {
		t.Errorf("healed status took %v", took)
	}
}

func TestSlowStart(t *testing.T) {
	h := start(t, options{chaos: true})
	const delay = 200 * time.Millisecond
	chaos(h, protocol.ChaosSlowStart, map[string]any{"delay_seconds": delay.Seconds()})
	began := time.Now()
	h.ok(protocol.TypeInit, initRequest("synthetic://8x8", nil, nil))
	if took := time.Since(began); took < delay {
		t.Errorf("init took %v, want at least %v", took, delay)
	}
}

func TestSpawnGrandchild(t *testing.T) {
	h := start(t, options{chaos: true})
	h.failure(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosSpawnGrandchild}, protocol.ErrTypeOperation)

	spawned := make(chan struct{}, 1)
	h = start(t, options{chaos: true, spawn: func() error { spawned <- struct{}{}; return nil }})
	chaos(h, protocol.ChaosSpawnGrandchild, nil)
	select {
	case <-spawned:
	default:
		t.Fatal("SpawnGrandchild was not called")
	}
	failing := start(t, options{chaos: true, spawn: func() error { return errors.New("fork bomb averted") }})
	if msg := failing.failure(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosSpawnGrandchild}, protocol.ErrTypeOperation); !strings.Contains(msg, "fork bomb averted") {
		t.Errorf("message %q", msg)
	}
}
