package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager/protocol"
)

// Issue 9, item 1, black-box: ten inits sent at once against
// STREAM_MANAGER_MAX_RAM_MB used to be admitted all ten. The limit leaves
// room for three and a half workers of the size measured on a first
// server; the admitted workers plus the manager may pass it by one worker
// at most, and the refusals name the numbers.
func TestRAMLimitUnderConcurrentInits(t *testing.T) {
	const video = "synthetic://64x48?fps=50"
	cal := startServer(t, nil)
	id := cal.initPipeline(t, video)
	if _, err := cal.client().Status(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	worker := uint64(vmRSS(t, cal.workers(t)[id].Pid)) << 10
	cal.cleanup()

	workerMB := worker>>20 + 1
	probe := startServer(t, nil) // an idle manager, as the limited one starts
	manager := uint64(vmRSS(t, probe.Pid)) << 10
	probe.cleanup()
	limitMB := (manager + worker*7/2) >> 20
	t.Logf("manager %d KiB, worker %d KiB: limit %d MiB, worker prediction %d MiB", manager>>10, worker>>10, limitMB, workerMB)
	s := startServer(t, []string{
		fmt.Sprintf("STREAM_MANAGER_MAX_RAM_MB=%d", limitMB),
		fmt.Sprintf("STREAM_MANAGER_WORKER_RAM_MB=%d", workerMB),
	})

	before := uint64(vmRSS(t, s.Pid)) << 10
	ids, refused := testkit.ConcurrentInits(context.Background(), s.client(), 10, video)
	if len(ids) == 0 || len(refused) == 0 {
		t.Fatalf("admitted %d, refused %d (%v): want some of each with room for 3.5 workers", len(ids), len(refused), refused)
	}
	for _, err := range refused {
		var pe *protocol.Error
		msg := err.Error()
		if !errors.As(err, &pe) || pe.Type != protocol.ErrTypeInternal ||
			!strings.Contains(msg, fmt.Sprintf("STREAM_MANAGER_MAX_RAM_MB=%d MiB", limitMB)) || !strings.Contains(msg, "reserved") {
			t.Fatalf("refusal = %v, want internal_error with the measured, reserved and limit numbers", err)
		}
	}
	// The manager as admission measured it, plus what it admitted.
	workers := s.workers(t)
	total := before
	var largest uint64
	for _, id := range ids {
		if _, err := s.client().Status(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		w := uint64(vmRSS(t, workers[id].Pid)) << 10
		total += w
		largest = max(largest, w)
	}
	t.Logf("%d admitted, %d refused: %d MiB in all (largest worker %d MiB), limit %d MiB", len(ids), len(refused), total>>20, largest>>20, limitMB)
	if total > limitMB<<20+largest {
		t.Fatalf("admitted %d workers: %d MiB in all exceeds the limit %d MiB + one worker %d MiB", len(ids), total>>20, limitMB, largest>>20)
	}
}

// Issue 9, item 3, black-box: with STREAM_MANAGER_MAX_FRAME_BYTES=1024
// (the request cap) a status report over 1 KiB used to stop the worker's
// reader, every command then answered "its worker exited" and the
// pipeline stayed running with nobody probing it. Worker replies have
// their own cap now: large reports reach clients and probes alike.
func TestWorkerReplyOverRequestCap(t *testing.T) {
	t.Parallel()
	s := startServer(t, []string{"STREAM_MANAGER_MAX_FRAME_BYTES=1024", "STREAM_MANAGER_HEALTH_CHECK_INTERVAL=50ms"})
	id := s.initPipeline(t, "synthetic://64x48?fps=50")
	for range 4 {
		for _, typ := range []string{"mute", "resume"} {
			if env := rawJSON(t, s.Addr, map[string]any{"type": typ, "pipeline_id": id}); env.status() != "success" {
				t.Fatalf("%s = %v", typ, env.Response)
			}
		}
	}
	env := rawJSON(t, s.Addr, map[string]any{"type": "status", "pipeline_id": id})
	body, _ := json.Marshal(env.Response)
	if env.status() != "success" || len(body) <= 1024 {
		t.Fatalf("status = %d bytes, %v; want a success over the 1024-byte request cap", len(body), env.errorType())
	}
	// Probes of those reports keep succeeding: last_probe moves on and
	// the health record stays clean.
	health := func() map[string]any {
		resp, err := s.client().Inspect(context.Background())
		if err != nil {
			t.Fatalf("inspect: %v", err)
		}
		for _, p := range listOf(resp.Fields["pipelines"]) {
			if p["pipeline_id"] == id {
				if p["state"] != "running" || p["marked_for_removal"] != false {
					t.Fatalf("pipeline %v, want running and unmarked", p)
				}
				h, _ := p["health"].(map[string]any)
				return h
			}
		}
		t.Fatalf("pipeline %s not listed by inspect", id)
		return nil
	}
	seen := map[any]bool{}
	if ok, _ := pollUntil(requestTimeout, func() bool {
		h := health()
		if h["consecutive_failures"] != 0.0 {
			t.Fatalf("health %v, want no failures", h)
		}
		if h["last_probe"] != nil {
			seen[h["last_probe"]] = true
		}
		return len(seen) >= 3
	}); !ok {
		t.Fatalf("saw %d probes in %s, want 3", len(seen), requestTimeout)
	}
}

// A reply over STREAM_MANAGER_MAX_WORKER_FRAME_BYTES fails its pipeline,
// whether a client's command or a probe draws it: the client is told why
// (never "its worker exited"), and the pipeline leaves the list and its
// worker is reaped within the bound.
func TestWorkerReplyOverWorkerCap(t *testing.T) {
	t.Parallel()
	for _, by := range []string{"client", "probe"} {
		t.Run(by, func(t *testing.T) {
			interval := "3600"
			if by == "probe" {
				interval = "500ms" // init and inspect name the worker first
			}
			s := startServer(t, []string{"STREAM_MANAGER_MAX_WORKER_FRAME_BYTES=1024",
				"STREAM_MANAGER_HEALTH_CHECK_INTERVAL=" + interval, "STREAM_MANAGER_TERMINATION_GRACE_PERIOD=200ms"})
			id := s.initPipeline(t, "synthetic://64x48?fps=50")
			pid := s.workers(t)[id].Pid
			if pid == 0 {
				t.Fatalf("pipeline %s failed before inspect named its worker", id)
			}
			if by == "client" {
				env := rawJSON(t, s.Addr, map[string]any{"type": "status", "pipeline_id": id})
				msg, _ := env.Response["error_message"].(string)
				if env.errorType() != "operation_error" || !strings.Contains(msg, "STREAM_MANAGER_MAX_WORKER_FRAME_BYTES=1024") || strings.Contains(msg, "exited") {
					t.Fatalf("status = %v, want operation_error naming the worker frame cap", env.Response)
				}
			}
			// Bound: one probe interval, the grace period, the kill and
			// the reap, with room for a loaded machine.
			if ok, took := pollUntil(requestTimeout, func() bool {
				ids, err := s.client().List(context.Background())
				if err != nil {
					t.Fatalf("list: %v", err)
				}
				_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
				return len(ids) == 0 && os.IsNotExist(err)
			}); !ok {
				t.Fatalf("pipeline still listed or worker %d not reaped after %s", pid, took)
			} else {
				t.Logf("failed, unlisted and reaped in %s", took)
			}
		})
	}
}
