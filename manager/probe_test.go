package manager_test

import (
	"errors"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// A reply that arrives after its command timed out, while no other
// command is in flight, is stale: counted and dropped, never kept for a
// caller (the deferred clean-up of a call forgets the id it waited for).
func TestLateReplyWithNothingInFlightIsStale(t *testing.T) {
	r, id := lateStatus(t, 0.6)
	// No command follows: the late report must still be seen as stale.
	r.Events.WaitFor(t, "stale response", func(e manager.Event) bool {
		s, ok := e.(manager.StaleResponse)
		return ok && s.PipelineID == id && !s.Garbage
	})
	if n := r.M.Snapshot().StaleResponses; n != 1 {
		t.Fatalf("snapshot counted %d stale responses, want 1", n)
	}
}

// lateStatus starts a manager whose commands time out after 300 ms (no
// probes), one pipeline whose status answers take delay seconds, and a
// status that timed out: its reply is still to come.
func lateStatus(t *testing.T, delay float64) (*testkit.Rig, string) {
	r := testkit.StartManager(t, noProbes(300*time.Millisecond, 300*time.Millisecond), memory(t))
	id := r.Init(t)
	if err := r.Client.Chaos(t.Context(), id, "slow_probe", map[string]any{"delay_seconds": delay}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Client.Status(t.Context(), id); !isType(err, protocol.ErrTypeOperation) {
		t.Fatalf("slow status = %v, want operation_error (timeout)", err)
	}
	r.Events.WaitFor(t, "timeout", func(e manager.Event) bool { _, ok := e.(manager.CommandTimedOut); return ok })
	return r, id
}

// A client command stuck in flight longer than a probe may wait counts as
// a failed probe: the health loop removes the hung pipeline long before
// the command's own (here one-minute) deadline.
func TestProbeCountsACommandStuckInFlight(t *testing.T) {
	r, cfg, id := hungPipeline(t, time.Minute)
	ctx := t.Context()
	stuck := make(chan error, 1)
	go func() {
		_, err := r.Client.Status(ctx, id)
		stuck <- err
	}()
	waitUnhealthyExit(t, r, id)
	busy := 0
	for _, e := range r.Events.All() {
		p, ok := e.(manager.ProbeResult)
		if !ok || p.PipelineID != id || p.Err == nil {
			continue
		}
		if errors.Is(p.Err, manager.ErrBusy) {
			busy++
		}
		// After a failure the health loop looks again sooner: half the
		// base interval (HangBound assumes no more than the base).
		if p.NextInterval != cfg.HealthCheckInterval/2 {
			t.Errorf("next probe %v after a failure, want half the %v interval", p.NextInterval, cfg.HealthCheckInterval)
		}
	}
	if busy == 0 {
		t.Error("no failed probe counted the command in flight")
	}
	if err := <-stuck; err == nil {
		t.Error("the stuck status was answered ok by a removed pipeline")
	}
}

// hungPipeline starts a manager with fast probes (every 50 ms, 200 ms
// timeout) and command deadlines up to queueTimeout, and one pipeline
// whose worker has stopped reading commands.
func hungPipeline(t *testing.T, queueTimeout time.Duration) (*testkit.Rig, manager.Config, string) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.QueueTimeout = queueTimeout
	cfg.CommandTimeoutFloor = min(100*time.Millisecond, queueTimeout)
	cfg.HealthCheckInterval = 50 * time.Millisecond
	cfg.HealthCheckTimeout = 200 * time.Millisecond
	cfg.ProbeTimeoutFloor = 50 * time.Millisecond
	r := testkit.StartManager(t, cfg, memory(t))
	id := r.Init(t)
	if err := r.Client.Chaos(t.Context(), id, "hang_queue", nil); err != nil {
		t.Fatal(err)
	}
	return r, cfg, id
}

// waitUnhealthyExit waits for id's worker to exit after the health loop
// found it unhealthy.
func waitUnhealthyExit(t *testing.T, r *testkit.Rig, id string) {
	t.Helper()
	exit := r.Events.WaitFor(t, "unhealthy exit", func(e manager.Event) bool {
		x, ok := e.(manager.WorkerExited)
		return ok && x.PipelineID == id
	}).(manager.WorkerExited)
	if exit.Reason != manager.ExitUnhealthy {
		t.Fatalf("exit reason = %q, want unhealthy", exit.Reason)
	}
}

// A command that timed out backs its deadline off (RFC 6298): the next
// one of the same kind waits twice as long, up to the queue timeout.
func TestCommandTimeoutBacksOff(t *testing.T) {
	cfg := noProbes(2*time.Second, 50*time.Millisecond)
	r := testkit.StartManager(t, cfg, memory(t))
	ctx := t.Context()
	id := r.Init(t)
	if _, err := r.Client.Status(ctx, id); err != nil { // a fast sample: the deadline drops to its floor
		t.Fatal(err)
	}
	if err := r.Client.Chaos(ctx, id, "slow_probe", map[string]any{"delay_seconds": 0.4}); err != nil {
		t.Fatal(err)
	}
	var after []time.Duration
	for i := range 2 {
		if _, err := r.Client.Status(ctx, id); !isType(err, protocol.ErrTypeOperation) {
			t.Fatalf("slow status = %v, want operation_error (timeout)", err)
		}
		// Its late reply ends the worker's sleep: the next command is
		// read at once and times out on its own deadline.
		r.Events.WaitFor(t, "late reply", func(e manager.Event) bool {
			s, ok := e.(manager.StaleResponse)
			return ok && s.PipelineID == id && r.M.Snapshot().StaleResponses > int64(i)
		})
		for _, e := range r.Events.All() {
			if c, ok := e.(manager.CommandTimedOut); ok && c.Command == protocol.TypeStatus && len(after) == i {
				if i == 0 || c.After != after[0] {
					after = append(after, c.After)
				}
			}
		}
	}
	if len(after) != 2 || after[1] != min(2*after[0], cfg.QueueTimeout) {
		t.Fatalf("deadlines of two timed-out statuses = %v, want the second twice the first", after)
	}
}

// noProbes is a chaos-enabled configuration whose command deadlines adapt
// between floor and queueTimeout and whose health loop never probes (it
// would take the slot).
func noProbes(queueTimeout, floor time.Duration) manager.Config {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.QueueTimeout = queueTimeout
	cfg.CommandTimeoutFloor = floor
	cfg.HealthCheckInterval = time.Hour
	return cfg
}
