package e2e

import (
	"context"
	"errors"
	"fmt"
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
	s := startServer(t, []string{
		fmt.Sprintf("STREAM_MANAGER_MAX_RAM_MB=%d", limitMB),
		fmt.Sprintf("STREAM_MANAGER_WORKER_RAM_MB=%d", workerMB),
	})

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
	workers := s.workers(t)
	total := uint64(vmRSS(t, s.Pid)) << 10
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
