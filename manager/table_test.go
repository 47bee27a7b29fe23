package manager_test

import (
	"slices"
	"testing"

	"github.com/corral-dev/corral/internal/testkit"
)

// list_pipelines answers in init order (upstream's table is an insertion
// ordered dict), whatever the ids; inspect sorts by id.
func TestListInInitOrder(t *testing.T) {
	r := testkit.StartManager(t, testConfig(), memory(t))
	var want []string
	for range 12 {
		want = append(want, r.Init(t))
	}
	got, err := r.Client.List(t.Context())
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("list = %v, %v; want init order %v", got, err, want)
	}
	snap := r.M.Snapshot()
	ids := make([]string, len(snap.Pipelines))
	for i, p := range snap.Pipelines {
		ids[i] = p.PipelineID
	}
	if !slices.IsSorted(ids) || len(ids) != len(want) {
		t.Fatalf("snapshot ids = %v, want the %d ids sorted", ids, len(want))
	}
}

// The per-pipeline queue bound counts commands waiting or in flight: one
// that was answered leaves the count, so sequential commands never make a
// pipeline busy.
func TestQueueBoundCountsOnlyWaitingCommands(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueuedPerPipeline = 2
	r := testkit.StartManager(t, cfg, memory(t))
	id := r.Init(t)
	for i := range 3 * cfg.MaxQueuedPerPipeline {
		if _, err := r.Client.Status(t.Context(), id); err != nil {
			t.Fatalf("sequential status %d: %v", i+1, err)
		}
	}
}
