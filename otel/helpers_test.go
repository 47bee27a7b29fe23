package otel_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait in these tests; reaching it is a failure.
const wait = 10 * time.Second

// telemetry is an SDK pair that records everything in memory.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t testing.TB) *telemetry {
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		_ = tel.tp.Shutdown(context.Background())
		_ = tel.mp.Shutdown(context.Background())
	})
	return tel
}

func (tel *telemetry) opts() []corralotel.Option {
	return []corralotel.Option{corralotel.WithTracerProvider(tel.tp), corralotel.WithMeterProvider(tel.mp)}
}

// named returns the ended spans called name, in end order.
func (tel *telemetry) named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// waitSpan waits (bounded) for an ended span matching pred.
func (tel *telemetry) waitSpan(t testing.TB, what string, pred func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, s := range tel.spans.Ended() {
			if pred(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s span within %s", what, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (tel *telemetry) metric(t testing.TB, name string) metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return metricdata.Metrics{}
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// wantAttrs checks that s has every attribute of want (and maybe more).
func wantAttrs(t testing.TB, s sdktrace.ReadOnlySpan, want ...attribute.KeyValue) {
	t.Helper()
	got := attrs(s)
	for _, kv := range want {
		if v, ok := got[kv.Key]; !ok || v != kv.Value {
			t.Errorf("span %s: %s = %v (present %v), want %v", s.Name(), kv.Key, v.Emit(), ok, kv.Value.Emit())
		}
	}
}

func noAttr(t testing.TB, s sdktrace.ReadOnlySpan, key attribute.Key) {
	t.Helper()
	if v, ok := attrs(s)[key]; ok {
		t.Errorf("span %s: unexpected %s = %v", s.Name(), key, v.Emit())
	}
}

func testConfig() manager.Config {
	cfg := testkit.Config()
	cfg.ProcessJoinTimeout = 2 * time.Second
	return cfg
}

// rig is a manager over in-memory workers whose worker loops trace with
// the same provider, and its handler chain.
type rig struct {
	m   *manager.Manager
	h   manager.Handler
	tel *telemetry
	ev  *testkit.Recorder
}

func newRig(t testing.TB, cfg manager.Config) *rig {
	t.Helper()
	tel := newTelemetry(t)
	ev := testkit.NewRecorder(wait)
	l := launch.NewMemory(launch.MemoryConfig{
		Tracer: corralotel.WorkerTracer(append(tel.opts(), corralotel.WithFrameSampleEvery(5))...),
	})
	m, err := manager.New(cfg, manager.Options{
		Launcher: l,
		// The otel hook runs first: when a test sees an event, its span
		// has ended.
		Hook: manager.Hooks(corralotel.EventHook(tel.opts()...), ev.Hook),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{m: m, tel: tel, ev: ev,
		h: manager.Chain(m, manager.Recover(nil), corralotel.Middleware(tel.opts()...))}
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

func (r *rig) shutdown(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.m.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func request(typ, id string, fields map[string]any) *protocol.Request {
	req := &protocol.Request{Type: typ, PipelineID: id, Fields: map[string]json.RawMessage{}}
	for k, v := range fields {
		req.Fields[k], _ = json.Marshal(v)
	}
	return req
}

func initRequest() *protocol.Request {
	return request(protocol.TypeInit, "", map[string]any{
		"video_configuration": map[string]any{"type": "VideoConfiguration", "video_reference": "synthetic://32x24?fps=100"},
	})
}
