package manager_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestCommandLifecycle(t *testing.T) {
	r := testkit.StartManager(t, testConfig(), memory(t))
	ctx := t.Context()

	ids, err := r.Client.List(ctx)
	if err != nil || len(ids) != 0 {
		t.Fatalf("list = %v, %v; want empty", ids, err)
	}
	id := r.Init(t)
	if ids, _ := r.Client.List(ctx); len(ids) != 1 || ids[0] != id {
		t.Fatalf("list = %v, want [%s]", ids, id)
	}
	st, err := r.Client.Status(ctx, id)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if _, ok := st.Fields["report"].(map[string]any); !ok || st.PipelineID != id {
		t.Fatalf("status = %+v, want a report for %s", st, id)
	}
	// A result arrives within a bounded number of polls.
	deadline := time.Now().Add(wait)
	for {
		res, err := r.Client.Consume(ctx, id)
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
		outs, _ := res.Fields["outputs"].([]any)
		meta, _ := res.Fields["frames_metadata"].([]any)
		if len(outs) != len(meta) {
			t.Fatalf("consume: %d outputs, %d metadata", len(outs), len(meta))
		}
		if len(outs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no result consumed within the bound")
		}
		time.Sleep(20 * time.Millisecond) // polling a worker that has no push channel
	}
	if err := r.Client.Pause(ctx, id); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if err := r.Client.Resume(ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := r.Client.Terminate(ctx, id); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	if _, err := r.Client.Status(ctx, id); !isType(err, protocol.ErrTypeNotFound) {
		t.Fatalf("status after terminate = %v, want not_found", err)
	}
	if ids, _ := r.Client.List(ctx); len(ids) != 0 {
		t.Fatalf("list after terminate = %v", ids)
	}
	var states []protocol.State
	for _, e := range r.Events.All() {
		if s, ok := e.(manager.PipelineStateChanged); ok && s.PipelineID == id && s.To != protocol.StateIdle {
			states = append(states, s.To)
		}
	}
	want := []protocol.State{protocol.StateStarting, protocol.StateRunning, protocol.StatePaused,
		protocol.StateRunning, protocol.StateTerminating}
	if strings.Join(toStrings(states), ",") != strings.Join(toStrings(want), ",") {
		t.Fatalf("state changes = %v, want %v", states, want)
	}
}

func toStrings(s []protocol.State) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}

func TestErrorRows(t *testing.T) {
	r := testkit.StartManager(t, testConfig(), memory(t))
	ctx := t.Context()
	missing := "no-such-pipeline"
	for _, typ := range []string{protocol.TypeStatus, protocol.TypeMute, protocol.TypeResume, protocol.TypeConsumeResult} {
		resp, err := r.Client.Call(ctx, typ, missing, nil)
		if !isType(err, protocol.ErrTypeNotFound) {
			t.Errorf("%s unknown id: err = %v, want not_found", typ, err)
		}
		if want := "Could not find InferencePipeline with id=" + missing + "."; resp.PublicErrorMessage != want {
			t.Errorf("%s public message = %q, want %q", typ, resp.PublicErrorMessage, want)
		}
	}
	if _, err := r.Client.Call(ctx, protocol.TypeTerminate, missing, nil); !isType(err, protocol.ErrTypeInvalidPayload) {
		t.Errorf("terminate unknown id = %v, want invalid_payload (upstream quirk)", err)
	}
	resp, err := r.Client.Call(ctx, protocol.TypeWebRTC, "", map[string]any{"webrtc_offer": map[string]string{"type": "offer", "sdp": "x"}})
	if !isType(err, protocol.ErrTypeOperation) || !strings.Contains(resp.ErrorMessage, "WebRTC") {
		t.Errorf("webrtc = %v, want operation_error about WebRTC", err)
	}
	if _, err := r.Client.Call(ctx, protocol.TypeChaos, missing, map[string]any{"fault": "crash"}); !isType(err, protocol.ErrTypeInvalidPayload) {
		t.Errorf("chaos without --chaos = %v, want invalid_payload", err)
	}
	// A failed init names its pipeline id and leaves nothing in the table.
	bad := protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://0x10"}}
	id, err := r.Client.Init(ctx, bad)
	if !isType(err, protocol.ErrTypeInvalidPayload) || !strings.Contains(err.Error(), "synthetic://0x10") {
		t.Errorf("init bad reference = %v, want invalid_payload naming it", err)
	}
	if id == "" {
		t.Error("failed init answered without a pipeline_id")
	}
	if snap := r.M.Snapshot(); len(snap.Pipelines) != 0 {
		t.Errorf("table after failed init = %+v", snap.Pipelines)
	}
}

func TestCommandsToTerminatingPipelineRefused(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.TerminationGracePeriod = 2 * time.Second
	r := testkit.StartManager(t, cfg, memory(t))
	ctx := t.Context()
	id := r.Init(t)
	if err := r.Client.Chaos(ctx, id, "ignore_sigterm", nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Client.Terminate(ctx, id) }()
	r.Events.WaitFor(t, "terminating state", func(e manager.Event) bool {
		s, ok := e.(manager.PipelineStateChanged)
		return ok && s.PipelineID == id && s.To == protocol.StateTerminating
	})
	resp, err := r.Client.Status(ctx, id)
	if !isType(err, protocol.ErrTypeOperation) || resp.ErrorMessage != "Pipeline "+id+" is being terminated." {
		t.Errorf("status while terminating = %v (%q)", err, resp.ErrorMessage)
	}
	if err := r.Client.Terminate(ctx, id); !isType(err, protocol.ErrTypeOperation) {
		t.Errorf("second terminate = %v, want operation_error", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("terminate: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("terminate did not return")
	}
	exit := r.Events.WaitFor(t, "worker exit", func(e manager.Event) bool {
		x, ok := e.(manager.WorkerExited)
		return ok && x.PipelineID == id
	}).(manager.WorkerExited)
	if !exit.Killed || exit.Reason != manager.ExitRequested {
		t.Errorf("exit = %+v, want killed on request", exit)
	}
}

func TestStaleResponseNeverReachesNextCaller(t *testing.T) {
	r, id := lateStatus(t, 0.8)
	ctx := t.Context()
	// The next command must get its own answer, not the late status report.
	res, err := r.Client.Consume(ctx, id)
	if errors.Is(err, &protocol.Error{Type: protocol.ErrTypeOperation}) {
		// The worker may still be sleeping on the old status: the slot is
		// free but the reply is late, so this one times out too. Both are
		// correct; what must never happen is a report delivered here.
		t.Logf("consume behind the stale reply timed out: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	if _, leaked := res.Fields["report"]; leaked {
		t.Fatalf("consume received the stale status report: %+v", res)
	}
	r.Events.WaitFor(t, "stale response", func(e manager.Event) bool {
		s, ok := e.(manager.StaleResponse)
		return ok && s.PipelineID == id && !s.Garbage
	})
	if r.M.Snapshot().StaleResponses == 0 {
		t.Fatal("snapshot counted no stale response")
	}
}

func TestGarbageAndStaleFramesDropped(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	r := testkit.StartManager(t, cfg, memory(t))
	ctx := t.Context()
	id := r.Init(t)
	for _, f := range []string{"garbage_output", "stale_responses"} {
		if err := r.Client.Chaos(ctx, id, f, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		res, err := r.Client.Status(ctx, id)
		if err != nil {
			t.Fatalf("status among garbage: %v", err)
		}
		if _, ok := res.Fields["report"]; !ok {
			t.Fatalf("status answer = %+v", res)
		}
	}
	r.Events.WaitFor(t, "garbage frame", func(e manager.Event) bool { s, ok := e.(manager.StaleResponse); return ok && s.Garbage })
	r.Events.WaitFor(t, "stale frame", func(e manager.Event) bool { s, ok := e.(manager.StaleResponse); return ok && !s.Garbage })
}

func TestHealthTerminatesHungPipeline(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.HealthCheckInterval = 50 * time.Millisecond
	cfg.HealthCheckTimeout = 200 * time.Millisecond
	cfg.ProbeTimeoutFloor = 50 * time.Millisecond
	r := testkit.StartManager(t, cfg, memory(t))
	ctx := t.Context()
	hung, healthy := r.Init(t), r.Init(t)
	if err := r.Client.Chaos(ctx, hung, "hang_queue", nil); err != nil {
		t.Fatal(err)
	}
	waitUnhealthyExit(t, r, hung)
	var failures []int
	for _, e := range r.Events.All() {
		if p, ok := e.(manager.ProbeResult); ok && p.PipelineID == hung && p.Err != nil {
			failures = append(failures, p.ConsecutiveFailures)
		}
	}
	if len(failures) < cfg.MaxHealthFailures || failures[cfg.MaxHealthFailures-1] != cfg.MaxHealthFailures {
		t.Fatalf("failed probes counted %v, want 1..%d", failures, cfg.MaxHealthFailures)
	}
	if ids, _ := r.Client.List(ctx); len(ids) != 1 || ids[0] != healthy {
		t.Fatalf("list = %v, want only the healthy pipeline", ids)
	}
	for _, p := range r.M.Snapshot().Pipelines {
		if p.PipelineID == healthy && p.Health.ConsecutiveFailures != 0 {
			t.Fatalf("healthy pipeline has %d failures", p.Health.ConsecutiveFailures)
		}
	}
}

func TestWarmPool(t *testing.T) {
	cfg := testConfig()
	cfg.PreloadedProcesses = 2
	r := testkit.StartManager(t, cfg, memory(t))
	spawned := func(n int) func(manager.Event) bool {
		seen := 0
		return func(e manager.Event) bool {
			if s, ok := e.(manager.PipelineStateChanged); ok && s.To == protocol.StateIdle {
				seen++
			}
			return seen == n
		}
	}
	r.Events.WaitFor(t, "two warm workers", spawned(2))
	before := map[string]bool{}
	for _, p := range r.M.Snapshot().Pipelines {
		if p.Idle {
			before[p.PipelineID] = true
		}
	}
	if len(before) != 2 {
		t.Fatalf("pool holds %d idle workers, want 2", len(before))
	}
	id := r.Init(t)
	if !before[id] {
		t.Fatalf("init %s did not take a warm worker from %v", id, before)
	}
	if ids, _ := r.Client.List(t.Context()); len(ids) != 1 {
		t.Fatalf("list = %v: idle workers must not be listed", ids)
	}
	r.Events.WaitFor(t, "pool refill", spawned(3))
}

func TestRAMAdmission(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRAMMB = 100
	r := testkit.StartManager(t, cfg, memory(t), testkit.WithManagerOptions(func(o *manager.Options) {
		o.MemoryUsage = func(int) (uint64, error) { return 150 << 20, nil }
	}))
	_, err := r.Client.Init(t.Context(), synthetic())
	if !isType(err, protocol.ErrTypeInternal) || !strings.Contains(err.Error(), "150 MiB") || !strings.Contains(err.Error(), "STREAM_MANAGER_MAX_RAM_MB=100") {
		t.Fatalf("init over the RAM limit = %v, want internal_error with the numbers", err)
	}
}

// Under steady client load the probe finds the slot busy every time; the
// hang must still be detected, from the client commands' timeouts and from
// the age of the command in flight.
func TestHangDetectedUnderClientLoad(t *testing.T) {
	r, _, id := hungPipeline(t, 400*time.Millisecond)
	ctx := t.Context()
	stop := make(chan struct{})
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = r.Client.Status(ctx, id)
		}
	}()
	defer func() { close(stop); <-loaded }()
	waitUnhealthyExit(t, r, id)
}
