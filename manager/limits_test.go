package manager_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// Issue 9, item 1: ten inits at once against a RAM limit used to be
// admitted all ten, each reading memory before any new worker existed.
// In-memory workers have no resident size of their own, so each keeps its
// reservation (WorkerRAMMB) and the count admitted is exact: the manager's
// 10 MiB plus 20 MiB per worker reaches the 80 MiB limit after four.
func TestRAMAdmissionReservesConcurrentInits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRAMMB, cfg.WorkerRAMMB = 80, 20
	cfg.HealthCheckInterval = time.Hour
	r := testkit.StartManager(t, cfg, memory(t), testkit.WithManagerOptions(func(o *manager.Options) {
		o.MemoryUsage = func(pid int) (uint64, error) {
			if pid != os.Getpid() {
				return 0, fmt.Errorf("asked for pid %d: in-memory workers have none", pid)
			}
			return 10 << 20, nil
		}
	}))
	ids, refused := testkit.ConcurrentInits(t.Context(), r.Client, 10, "synthetic://64x48?fps=50")
	if len(ids) != 4 || len(refused) != 6 {
		t.Fatalf("admitted %d, refused %d (%v); want 4 admitted: 10 MiB + 4 x 20 MiB reserved = limit 80 + one worker", len(ids), len(refused), refused)
	}
	for _, err := range refused {
		msg := err.Error()
		if !isType(err, protocol.ErrTypeInternal) || !strings.Contains(msg, "10 MiB") ||
			!strings.Contains(msg, "80 MiB more is reserved for 4 starting workers") || !strings.Contains(msg, "STREAM_MANAGER_MAX_RAM_MB=80") {
			t.Fatalf("refusal = %v, want internal_error with the measured, reserved and limit numbers", err)
		}
	}
	// The reservation leaves with the pipeline: one terminate makes room
	// for exactly one more.
	if err := r.Client.Terminate(t.Context(), ids[0]); err != nil {
		t.Fatal(err)
	}
	if more, refused := testkit.ConcurrentInits(t.Context(), r.Client, 3, "synthetic://64x48?fps=50"); len(more) != 1 || len(refused) != 2 {
		t.Fatalf("after one terminate: admitted %d, refused %d, want 1 and 2", len(more), len(refused))
	}
}

// The warm pool holds the same reservations: it fills only up to the
// limit. A warm worker's room was admitted when it started, so inits take
// the warm workers, and are refused once none is left, the pool's refill
// being refused too.
func TestRAMAdmissionBoundsWarmPool(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRAMMB, cfg.WorkerRAMMB, cfg.PreloadedProcesses = 80, 20, 8
	cfg.HealthCheckInterval = time.Hour
	r := testkit.StartManager(t, cfg, memory(t), testkit.WithManagerOptions(func(o *manager.Options) {
		o.MemoryUsage = func(int) (uint64, error) { return 10 << 20, nil }
	}))
	r.Events.WaitFor(t, "pool refused at the limit", func(e manager.Event) bool {
		pe, ok := e.(manager.PipelineError)
		return ok && pe.Op == "preload" && strings.Contains(pe.Err.Error(), "STREAM_MANAGER_MAX_RAM_MB=80")
	})
	idle := 0
	for _, p := range r.M.Snapshot().Pipelines {
		if p.Idle {
			idle++
		}
	}
	if idle != 4 {
		t.Fatalf("%d warm workers, want 4 (10 MiB + 4 x 20 MiB reaches the 80 MiB limit)", idle)
	}
	if ids, refused := testkit.ConcurrentInits(t.Context(), r.Client, 6, "synthetic://64x48?fps=50"); len(ids) != 4 || len(refused) != 2 {
		t.Fatalf("admitted %d, refused %d (%v); want the 4 warm workers taken and 2 refused", len(ids), len(refused), refused)
	}
}

// rss reads the resident bytes of pid.
func rss(t *testing.T, pid int) uint64 {
	t.Helper()
	p, err := procfs.NewProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Statm()
	if err != nil {
		t.Fatal(err)
	}
	return s.Resident * uint64(os.Getpagesize())
}

// The same with real worker processes and real /proc readings: the room
// left under the limit is three and a half measured workers, and ten
// concurrent inits may fill it by at most one worker more.
func TestRAMAdmissionRealWorkers(t *testing.T) {
	const video = "synthetic://64x48?fps=50"
	// Measure one worker, for the limit and the default prediction.
	cal := testkit.StartManager(t, testConfig(), testkit.ProcessLauncher(t))
	calID := cal.Init(t)
	if _, err := cal.Client.Status(t.Context(), calID); err != nil {
		t.Fatal(err)
	}
	worker := rss(t, cal.Pid(t, calID))
	if err := cal.Client.Terminate(t.Context(), calID); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig()
	cfg.HealthCheckInterval = time.Hour
	self := rss(t, os.Getpid())
	limit := self + worker*7/2
	cfg.MaxRAMMB = int(limit >> 20)
	cfg.WorkerRAMMB = int(worker>>20) + 1
	r := testkit.StartManager(t, cfg, testkit.ProcessLauncher(t))
	before := rss(t, os.Getpid())
	ids, refused := testkit.ConcurrentInits(t.Context(), r.Client, 10, video)
	if len(ids) == 0 || len(refused) == 0 {
		t.Fatalf("admitted %d, refused %d (%v): want some of each with room for 3.5 workers", len(ids), len(refused), refused)
	}
	for _, err := range refused {
		if !isType(err, protocol.ErrTypeInternal) || !strings.Contains(err.Error(), "STREAM_MANAGER_MAX_RAM_MB") {
			t.Fatalf("refusal = %v, want internal_error naming the limit", err)
		}
	}
	var workers, largest uint64
	for _, id := range ids {
		if _, err := r.Client.Status(t.Context(), id); err != nil { // let it run a little
			t.Fatal(err)
		}
		w := rss(t, r.Pid(t, id))
		workers += w
		largest = max(largest, w)
	}
	limitBytes := uint64(cfg.MaxRAMMB) << 20
	t.Logf("manager %d MiB, %d workers %d MiB (largest %d MiB), limit %d MiB", before>>20, len(ids), workers>>20, largest>>20, cfg.MaxRAMMB)
	if before+workers > limitBytes+largest {
		t.Fatalf("admitted %d workers: manager %d MiB + workers %d MiB exceeds limit %d MiB + one worker %d MiB",
			len(ids), before>>20, workers>>20, cfg.MaxRAMMB, largest>>20)
	}
}

// The prediction is learned: once a worker has run to its first good probe,
// its measured size (here 50 MiB, above the 20 MiB default) is what later
// inits of the same video configuration reserve. Ten at once with 140 MiB
// of room left admit three, not the seven the default would.
func TestRAMAdmissionLearnsWorkerSize(t *testing.T) {
	const video = "synthetic://64x48?fps=50"
	cfg := testConfig()
	cfg.MaxRAMMB, cfg.WorkerRAMMB = 200, 20
	cfg.HealthCheckInterval = 20 * time.Millisecond
	r := testkit.StartManager(t, cfg, testkit.ProcessLauncher(t), testkit.WithManagerOptions(func(o *manager.Options) {
		o.MemoryUsage = func(pid int) (uint64, error) {
			if pid == os.Getpid() {
				return 10 << 20, nil
			}
			return 50 << 20, nil
		}
	}))
	first := r.Init(t)
	r.Events.WaitFor(t, "a good probe", func(e manager.Event) bool {
		pr, ok := e.(manager.ProbeResult)
		return ok && pr.PipelineID == first && pr.Err == nil
	})
	ids, refused := testkit.ConcurrentInits(t.Context(), r.Client, 10, video)
	if len(ids) != 3 || len(refused) != 7 {
		t.Fatalf("admitted %d, refused %d (%v); want 3: 10 + 50 MiB used, 50 MiB learned per worker, limit 200 MiB", len(ids), len(refused), refused)
	}
}
