package chaos_test

import (
	"errors"
	"testing"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestInitStorm(t *testing.T) {
	r := start(t, testConfig())
	target := chaos.Target{Client: r.Client}
	in, err := mustLookup(t, protocol.FaultInitStorm).Inject(t.Context(), target, chaos.Spec{Params: map[string]any{"inits": 4}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "storm done", func() bool { return in.Observed()["done"] == true })
	if obs := in.Observed(); obs["admitted"] != 4 || obs["refused"] != 0 {
		t.Fatalf("observed %v, want 4 admitted without a limit", obs)
	}
	ids, err := r.Client.List(t.Context())
	if err != nil || len(ids) != 4 {
		t.Fatalf("list during the storm = %v, %v; want its 4 pipelines", ids, err)
	}
	heal(t, in)
	if obs := in.Observed(); obs["terminated"] != 4 {
		t.Fatalf("observed after heal %v, want 4 terminated", obs)
	}
	if ids, err := r.Client.List(t.Context()); err != nil || len(ids) != 0 {
		t.Fatalf("list after the heal = %v, %v; want none left", ids, err)
	}
}

// TestInitStormRefused: against a RAM limit below the manager's own size,
// every init of the storm is refused with internal_error and nothing is
// left to terminate.
func TestInitStormRefused(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRAMMB = 1
	r := start(t, cfg)
	in, err := mustLookup(t, protocol.FaultInitStorm).Inject(t.Context(), chaos.Target{Client: r.Client},
		chaos.Spec{Params: map[string]any{"inits": 3}})
	if err != nil {
		t.Fatal(err)
	}
	heal(t, in)
	obs := in.Observed()
	byType, _ := obs["refused_by_error_type"].(map[string]int)
	if obs["admitted"] != 0 || obs["refused"] != 3 || byType[protocol.ErrTypeInternal] != 3 || obs["terminated"] != 0 {
		t.Fatalf("observed %v, want 3 refused with %s", obs, protocol.ErrTypeInternal)
	}
}

func TestAbandonRequest(t *testing.T) {
	r := start(t, testConfig())
	id := r.Init(t)
	f := mustLookup(t, protocol.FaultAbandonRequest)
	if !f.NeedsPipeline() {
		t.Fatal("abandon_request must take a pipeline")
	}
	in, err := f.Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{PipelineID: id, Params: map[string]any{"requests": 5}})
	if err != nil {
		t.Fatal(err)
	}
	heal(t, in) // waits for the resets
	obs := in.Observed()
	if obs["sent"] != 5 || obs["reset"] != 5 || obs["command"] != protocol.TypeStatus {
		t.Fatalf("observed %v, want 5 status requests sent and reset", obs)
	}
	// The manager serves on: its pipeline answers.
	if _, err := r.Client.Status(t.Context(), id); err != nil {
		t.Fatalf("status after the abandoned requests: %v", err)
	}
}

func TestLimitFaultParams(t *testing.T) {
	r := start(t, testConfig())
	target := chaos.Target{Client: r.Client}
	for _, tc := range []struct {
		fault string
		spec  chaos.Spec
		want  error
	}{
		{protocol.FaultInitStorm, chaos.Spec{Params: map[string]any{"inits": 0}}, chaos.ErrBadParam},
		{protocol.FaultInitStorm, chaos.Spec{Params: map[string]any{"video": 3}}, chaos.ErrBadParam},
		{protocol.FaultAbandonRequest, chaos.Spec{PipelineID: "p", Params: map[string]any{"command": protocol.TypeChaos}}, chaos.ErrBadParam},
		{protocol.FaultAbandonRequest, chaos.Spec{PipelineID: "p", Params: map[string]any{"requests": 1001}}, chaos.ErrBadParam},
		{protocol.FaultAbandonRequest, chaos.Spec{}, chaos.ErrNoPipeline},
	} {
		if _, err := mustLookup(t, tc.fault).Inject(t.Context(), target, tc.spec); !errors.Is(err, tc.want) {
			t.Errorf("%s %v: err = %v, want %v", tc.fault, tc.spec.Params, err, tc.want)
		}
	}
}
