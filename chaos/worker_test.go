package chaos_test

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestWorkerFaultsAreAnswered(t *testing.T) {
	r := start(t, testConfig())
	id := r.Init(t)
	target := chaos.Target{Client: r.Client}
	for _, tc := range []struct {
		fault  string
		params map[string]any
		hold   time.Duration
	}{
		{protocol.FaultSlowProbe, map[string]any{"delay_seconds": 0.05}, 0},
		{protocol.FaultStaleResponses, nil, 0},
		{protocol.FaultGarbageOutput, nil, 0},
		{protocol.FaultIgnoreSigterm, nil, 0},
		{protocol.FaultSlowStart, map[string]any{"delay_seconds": 1}, 0},
		{protocol.FaultSpawnGrandchild, nil, 0},
		{protocol.FaultHangQueue, nil, 200 * time.Millisecond},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			in, err := mustLookup(t, tc.fault).Inject(t.Context(), target, chaos.Spec{PipelineID: id, Params: tc.params, For: tc.hold})
			if err != nil {
				t.Fatal(err)
			}
			if got := in.Observed()["answer"]; got != protocol.StatusSuccess {
				t.Fatalf("answer = %v, want success", got)
			}
			heal(t, in)
			// hang_queue heals itself when its duration ends; the
			// status below waits for that.
			if _, err := r.Client.Status(t.Context(), id); err != nil {
				t.Fatalf("status after heal: %v", err)
			}
		})
	}
}

func TestHangQueueDurationIsFor(t *testing.T) {
	r := start(t, testConfig())
	id := r.Init(t)
	in, err := mustLookup(t, protocol.FaultHangQueue).Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{PipelineID: id, For: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	params, _ := in.Observed()["params"].(map[string]any)
	if params["duration_seconds"] != 1.5 {
		t.Fatalf("params = %v, want duration_seconds 1.5", params)
	}
}

func TestWorkerCrash(t *testing.T) {
	r := start(t, testConfig())
	id := r.Init(t)
	pid := r.Pid(t, id)
	in, err := mustLookup(t, protocol.FaultWorkerCrash).Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{PipelineID: id, Params: map[string]any{"exit_code": 3}})
	if err != nil {
		t.Fatal(err)
	}
	if params, _ := in.Observed()["params"].(map[string]any); params["exit_code"] != 3 {
		t.Errorf("observed = %v, want exit_code 3", in.Observed())
	}
	eventually(t, "worker gone after worker_crash", func() bool { return procState(pid) == "" })
}

func TestWorkerFaultErrors(t *testing.T) {
	r := start(t, testConfig())
	slow := mustLookup(t, protocol.FaultSlowProbe)
	if _, err := slow.Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{PipelineID: "nope"}); !isErr(err, chaos.ErrPipelineNotFound) {
		t.Errorf("unknown pipeline: err = %v, want ErrPipelineNotFound", err)
	}
	id := r.Init(t)
	if _, err := slow.Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{PipelineID: id, Params: map[string]any{"delay_seconds": "slow"}}); !isErr(err, chaos.ErrBadParam) {
		t.Errorf("bad param: err = %v, want ErrBadParam", err)
	}
}
