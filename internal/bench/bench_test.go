package bench

import (
	"context"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corral-dev/corral/manager/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The floor answers one framed request per connection with a success, and
// refuses (closes on) a body that is not a typed JSON object.
func TestServeFloor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeFloor(ln) }()
	defer func() {
		_ = ln.Close()
		<-done
	}()
	addr := ln.Addr().String()
	if ok, err := roundTrip(context.Background(), addr, request(protocol.TypeListPipelines, ""), 5*time.Second); !ok || err != nil {
		t.Fatalf("list: ok=%v err=%v", ok, err)
	}
	if ok, err := roundTrip(context.Background(), addr, protocol.AppendFrame(nil, []byte(`[1]`)), 5*time.Second); ok || err == nil {
		t.Fatal("a body that is not a typed object was answered")
	}
	c := load(context.Background(), addr, [][]byte{request(protocol.TypeListPipelines, "")}, 4, 200*time.Millisecond, 5*time.Second)
	if c.Ops == 0 || c.Errors != 0 || !(c.OpsPerSec > 0) || !(c.P50us > 0) || c.P99us < c.P50us {
		t.Fatalf("load cell %+v: want answers, no error, p99 >= p50", c)
	}
}

// EchoMain sends every frame back unchanged and ends at end of input.
func TestEchoMain(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- EchoMain(inR, outW)
		_ = outW.Close()
	}()
	for _, body := range []string{`{"a":1}`, `x`} {
		go func() { _ = protocol.WriteFrame(inW, []byte(body)) }()
		got, err := protocol.ReadFrame(outR, 0)
		if err != nil || string(got) != body {
			t.Fatalf("echo of %q: %q, %v", body, got, err)
		}
	}
	_ = inW.Close()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d at end of input, want 0", code)
	}
}

func TestQuantileAndRatio(t *testing.T) {
	d := []time.Duration{4 * time.Microsecond, 1 * time.Microsecond, 3 * time.Microsecond, 2 * time.Microsecond}
	if got := quantileUS(d, 0.5); got != 3 {
		t.Errorf("p50 = %v µs, want 3", got)
	}
	if got := quantileUS(d, 0.99); got != 4 {
		t.Errorf("p99 = %v µs, want 4", got)
	}
	if got := quantileUS(nil, 0.5); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
	c := Cell{Clients: 8, P50us: 300, OpsPerSec: 500}
	c.ratioTo(Cell{Clients: 8, P50us: 200, OpsPerSec: 1000})
	if c.FloorP50 != 1.5 || c.FloorOps != 0.5 {
		t.Errorf("ratios %v %v, want 1.5 and 0.5", c.FloorP50, c.FloorOps)
	}
	c.ratioTo(Cell{Clients: 8}) // a floor cell with no answers leaves them
	if c.FloorP50 != 1.5 || c.FloorOps != 0.5 {
		t.Errorf("ratios %v %v after an empty floor cell, want them kept", c.FloorP50, c.FloorOps)
	}
}

// Targets are judged on the run's own values; a missing value never
// counts as met.
func TestTargets(t *testing.T) {
	r := &Result{
		Floor:  Floor{Cells: []Cell{{Clients: 1, Pipelines: 1, P50us: 100, OpsPerSec: 10}}, PipeRTTus: 10},
		List:   []Cell{{Clients: 1, Pipelines: 1, FloorP50: 1.2}, {Clients: 8, Pipelines: 1, FloorOps: 0.5}},
		Status: []Cell{{Clients: 1, Pipelines: 1, P50us: 120}},
		// 64/1 on one pipeline
		StatusFanRatio: 6, OtelOverheadRatio: 1.2, OtelNoopOverheadRatio: math.NaN(),
		ShutdownS:        map[string]float64{"1": 1, "16": 1.2, "64": 1.4},
		CrashDetectMsP50: 20, HangDetectS: 3, HangBoundS: 6, InitColdMsP50: 10, InitWarmMsP50: 2,
		WorkerRSSMB: 15, ProbeCPUPct: 1,
	}
	want := map[string]bool{
		"list p50 / floor, 1 client, 1 pipelines":                  true,
		"list ops / floor, 8 clients, 1 pipelines":                 false,
		"status p50 / (floor + 3 pipe RTT), 1 client, 1 pipelines": true, // 120 <= 100 + 30
		"status ops 64 clients / 1 client, one pipeline":           true,
		"otel_overhead_ratio":                                      false,
		"otel_noop_overhead_ratio":                                 false, // NaN: not measured
		"shutdown_s max / min":                                     true,
		"shutdown_s max":                                           true,
		"crash_detect_ms_p50":                                      true,
		"hang_detect_s / bound":                                    true,
		"init_warm / init_cold":                                    true,
		"worker_rss_mb":                                            true,
		"probe_cpu_pct":                                            true,
	}
	got := targets(r)
	if len(got) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(got), len(want), got)
	}
	for _, tg := range got {
		if w, ok := want[tg.Name]; !ok || w != tg.Met {
			t.Errorf("%s = %v: met %v, want %v (known %v)", tg.Name, tg.Value, tg.Met, w, ok)
		}
	}
}
