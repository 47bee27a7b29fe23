package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

func mustRequest(t *testing.T, fields map[string]any) *protocol.Request {
	t.Helper()
	body, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	req, err := protocol.ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestConcurrentStatusesShareOneRoundTrip holds eight status requests on a
// worker that stopped reading commands: they share one worker round trip,
// so the manager counts one timeout and every client gets its answer,
// while a status with a parameter of its own and a client that leaves do
// not share it.
func TestConcurrentStatusesShareOneRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Port, cfg.Chaos = 0, true
	cfg.HealthCheckInterval = time.Hour                                      // probes would add round trips
	cfg.QueueTimeout, cfg.CommandTimeoutFloor = 5*time.Second, 3*time.Second // the flight outlasts the set-up by far
	cfg.TerminationGracePeriod, cfg.ProcessJoinTimeout = 200*time.Millisecond, 5*time.Second
	m, err := New(cfg, Options{Launcher: launch.NewMemory(launch.MemoryConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	ctx := context.Background()
	initFields := map[string]any{"type": protocol.TypeInit}
	b, _ := json.Marshal(protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://64x48?fps=5"}}.Defaults())
	if err := json.Unmarshal(b, &initFields); err != nil {
		t.Fatal(err)
	}
	resp := m.Handle(ctx, mustRequest(t, initFields))
	if !resp.OK() {
		t.Fatalf("init: %+v", resp)
	}
	id := resp.PipelineID
	status := mustRequest(t, map[string]any{"type": protocol.TypeStatus, "pipeline_id": id})
	if r := m.Handle(ctx, status); !r.OK() {
		t.Fatalf("status before the hang: %+v", r)
	}
	if r := m.Handle(ctx, mustRequest(t, map[string]any{"type": protocol.TypeChaos, "pipeline_id": id,
		protocol.ChaosFieldFault: protocol.ChaosHangQueue})); !r.OK() {
		t.Fatalf("chaos: %+v", r)
	}
	p, perr := m.lookup(id, false)
	if perr != nil {
		t.Fatal(perr)
	}
	sent := m.seq.Load()

	const n = 8
	answers := make([]protocol.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = m.Handle(ctx, status) })
	}
	leaving, leave := context.WithCancel(ctx)
	var left protocol.Response
	wg.Go(func() { left = m.Handle(leaving, status) })
	// Bounded wait for all nine to be queued on the pipeline (no signal
	// exists for "a request is waiting").
	deadline := time.Now().Add(4 * time.Second)
	for p.queued.Load() < n+1 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests queued", p.queued.Load(), n+1)
		}
		time.Sleep(time.Millisecond)
	}
	leave()
	wg.Wait()

	if got := m.seq.Load() - sent; got != 1 {
		t.Errorf("%d worker commands sent for %d concurrent statuses, want 1", got, n+1)
	}
	if got := m.timeouts.Load(); got != 1 {
		t.Errorf("%d timeouts counted, want 1 (one shared round trip)", got)
	}
	for i, a := range answers {
		if a.OK() || !strings.Contains(a.ErrorMessage, "did not answer status") || a.PipelineID != id {
			t.Errorf("answer %d = %+v, want the shared timeout of pipeline %s", i, a, id)
		}
	}
	if want := fmt.Sprintf("Pipeline %s: status abandoned", id); left.OK() || !strings.Contains(left.ErrorMessage, want) {
		t.Errorf("the client that left got %+v, want %q", left, want)
	}
	if sharable(mustRequest(t, map[string]any{"type": protocol.TypeStatus, "pipeline_id": id, "excluded_fields": []string{"x"}})) {
		t.Error("a status with a parameter of its own is shared")
	}
	if sharable(mustRequest(t, map[string]any{"type": protocol.TypeConsumeResult, "pipeline_id": id})) {
		t.Error("consume_result is shared")
	}
}
