package protocol

import (
	"encoding/json"
	"testing"
)

func TestForwardedToWorker(t *testing.T) {
	for _, typ := range []string{TypeListPipelines, TypeInit, TypeWebRTC, TypeMute, TypeResume, TypeStatus,
		TypeConsumeResult, TypeTerminate, TypeInspect, TypeChaos} {
		want := typ == TypeMute || typ == TypeResume || typ == TypeStatus || typ == TypeConsumeResult || typ == TypeChaos
		if got := ForwardedToWorker(typ); got != want {
			t.Errorf("ForwardedToWorker(%q) = %v, want %v", typ, got, want)
		}
	}
	if ForwardedToWorker("reboot") {
		t.Error("an unknown type is forwarded")
	}
}

// TestInspectFields: the inspect body decodes back into Inspect, and an
// empty table is a list, not null.
func TestInspectFields(t *testing.T) {
	b, err := json.Marshal(Success(Inspect{StaleResponses: 2}.Fields()))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if _, isList := raw["pipelines"].([]any); !isList {
		t.Errorf("pipelines = %v, want an empty list", raw["pipelines"])
	}
	in := Inspect{Pipelines: []PipelineInfo{{PipelineID: "p1", State: StateRunning, Pid: 7,
		Health: HealthInfo{ProbeTimeout: 0.5, ProbeInterval: 2}}}, ShuttingDown: true, Timeouts: 3}
	b, err = json.Marshal(Success(in.Fields()))
	if err != nil {
		t.Fatal(err)
	}
	var back Inspect
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Pipelines) != 1 || back.Pipelines[0] != in.Pipelines[0] || !back.ShuttingDown || back.Timeouts != 3 {
		t.Errorf("round trip: got %+v, want %+v", back, in)
	}
}
