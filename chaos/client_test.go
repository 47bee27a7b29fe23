package chaos_test

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestClientFaults(t *testing.T) {
	cfg := testConfig()
	cfg.SocketTimeout = 300 * time.Millisecond
	r := start(t, cfg)
	target := chaos.Target{Client: r.Client}
	for _, tc := range []struct {
		fault  string
		spec   chaos.Spec
		expect map[string]any
	}{
		// The server drops a stalled client after its socket timeout,
		// well before the 5 s hold ends.
		{protocol.FaultClientStall, chaos.Spec{For: 5 * time.Second}, map[string]any{"dropped_by_server": true, "bytes_sent": 2}},
		{protocol.FaultClientDisconnect, chaos.Spec{}, map[string]any{"bytes_sent": 14, "frame_bytes": 29}},
		{protocol.FaultOversizedFrame, chaos.Spec{}, map[string]any{"answer": protocol.StatusFailure, "error_type": protocol.ErrTypeInvalidPayload}},
		{protocol.FaultMalformedFrame, chaos.Spec{}, map[string]any{"invalid_payload": 6}},
		{protocol.FaultClientBurst, chaos.Spec{Params: map[string]any{"clients": 20}}, map[string]any{"answered": 20, "ok": 20}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			in, err := mustLookup(t, tc.fault).Inject(t.Context(), target, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			// Each ends by itself (the stall because the server drops
			// it after its socket timeout, well before the 5 s hold).
			eventually(t, tc.fault+" done", func() bool { return in.Observed()["done"] == true })
			heal(t, in)
			obs := in.Observed()
			for k, want := range tc.expect {
				if obs[k] != want {
					t.Errorf("observed[%s] = %v, want %v (all: %v)", k, obs[k], want, obs)
				}
			}
			if _, err := r.Client.List(t.Context()); err != nil {
				t.Fatalf("list after %s: %v", tc.fault, err)
			}
		})
	}
}

func TestStallHealEndsTheHold(t *testing.T) {
	r := start(t, testConfig()) // socket timeout 2 s
	in, err := mustLookup(t, protocol.FaultClientStall).Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{For: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let it connect; an earlier heal is fine too
	heal(t, in)
	if obs := in.Observed(); obs["dropped_by_server"] == true {
		t.Fatalf("observed = %v, want the hold ended by heal", obs)
	}
}

func TestClientFaultsOnlyOnLoopback(t *testing.T) {
	target := chaos.Target{Client: &protocol.Client{Addr: "192.0.2.1:7070"}}
	for _, name := range chaos.Levels()[chaos.LevelClient] {
		if _, err := mustLookup(t, name).Inject(t.Context(), target, chaos.Spec{PipelineID: "p1"}); !isErr(err, chaos.ErrNotLoopback) {
			t.Errorf("%s: err = %v, want ErrNotLoopback", name, err)
		}
	}
}
