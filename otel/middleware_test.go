package otel_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

const (
	clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan  = "00f067aa0ba902b7"
)

func TestCommandSpans(t *testing.T) {
	r := newRig(t, testConfig())
	ctx := t.Context()

	// A successful init continues the client's trace into the worker.
	req := initRequest()
	req.Traceparent = "00-" + clientTrace + "-" + clientSpan + "-01"
	resp := r.h.Handle(ctx, req)
	if !resp.OK() {
		t.Fatalf("init: %+v", resp)
	}
	id := resp.PipelineID
	if resp.TraceID != clientTrace {
		t.Errorf("TraceID = %q, want the client's %q", resp.TraceID, clientTrace)
	}
	inits := r.tel.named(protocol.TypeInit)
	var server, worker sdktrace.ReadOnlySpan
	for _, s := range inits {
		if s.SpanKind() == trace.SpanKindServer && s.Parent().IsRemote() && s.Parent().SpanID().String() == clientSpan {
			server = s
		} else {
			worker = s
		}
	}
	if server == nil || worker == nil {
		t.Fatalf("want a manager and a worker init span, got %d spans", len(inits))
	}
	if got := server.SpanContext().TraceID().String(); got != clientTrace {
		t.Errorf("manager span trace = %s, want %s", got, clientTrace)
	}
	wantAttrs(t, server, attribute.String("rpc.system", "corral"), attribute.String("rpc.method", "init"),
		attribute.String("pipeline.id", id), attribute.String("corral.outcome", "success"))
	noAttr(t, server, "error.type")
	if server.Status().Code != codes.Unset {
		t.Errorf("success status = %v, want unset", server.Status())
	}
	// The worker's span is the manager span's child: the manager forwarded
	// its SERVER span as the WorkerCommand's traceparent.
	if worker.SpanKind() != trace.SpanKindServer || worker.Parent().SpanID() != server.SpanContext().SpanID() ||
		worker.SpanContext().TraceID() != server.SpanContext().TraceID() {
		t.Errorf("worker init span: kind %v parent %v trace %v; want server child of %v",
			worker.SpanKind(), worker.Parent().SpanID(), worker.SpanContext().TraceID(), server.SpanContext().SpanID())
	}
	// Sampled frame spans are children of the worker's init span.
	frame := r.tel.waitSpan(t, "frame", func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "frame" })
	if frame.Parent().SpanID() != worker.SpanContext().SpanID() || frame.SpanKind() != trace.SpanKindInternal {
		t.Errorf("frame span parent %v kind %v, want child of the worker init %v",
			frame.Parent().SpanID(), frame.SpanKind(), worker.SpanContext().SpanID())
	}

	// A command without traceparent starts a new trace.
	if resp := r.h.Handle(ctx, request(protocol.TypeStatus, id, nil)); !resp.OK() || len(resp.TraceID) != 32 || resp.TraceID == clientTrace {
		t.Errorf("status: ok %v trace %q, want a new trace", resp.OK(), resp.TraceID)
	}

	// A failing command.
	resp = r.h.Handle(ctx, request(protocol.TypeStatus, "nope", nil))
	if resp.OK() {
		t.Fatal("status of an unknown pipeline succeeded")
	}
	var failed sdktrace.ReadOnlySpan
	for _, s := range r.tel.named(protocol.TypeStatus) {
		if attrs(s)["pipeline.id"].AsString() == "nope" {
			failed = s
		}
	}
	if failed == nil {
		t.Fatal("no span for the failing status")
	}
	wantAttrs(t, failed, attribute.String("rpc.method", "status"), attribute.String("corral.outcome", "failure"),
		attribute.String("error.type", protocol.ErrTypeNotFound))
	if failed.Status().Code != codes.Error || failed.SpanKind() != trace.SpanKindServer || failed.Parent().IsValid() {
		t.Errorf("failing span: status %v kind %v parent %v; want Error, server, root", failed.Status(), failed.SpanKind(), failed.Parent())
	}

	// Metrics: command durations by method and outcome; pipelines by state.
	reg, err := corralotel.RegisterSnapshotGauge(r.m, r.tel.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	got := r.tel.metric(t, corralotel.MetricCommandDuration)
	point := func(method, outcome string) metricdata.HistogramDataPoint[float64] {
		return metricdata.HistogramDataPoint[float64]{Attributes: attribute.NewSet(
			attribute.String("rpc.method", method), attribute.String("corral.outcome", outcome))}
	}
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: corralotel.MetricCommandDuration, Unit: "s",
		Description: "Duration of commands handled by the manager, from request to response.",
		Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
			point("init", "success"), point("status", "success"), point("status", "failure"),
		}},
	}, got, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreValue(), metricdatatest.IgnoreExemplars())

	gauge := r.tel.metric(t, corralotel.MetricPipelines)
	if gauge.Unit != "{pipeline}" {
		t.Errorf("%s unit %q", gauge.Name, gauge.Unit)
	}
	counts := map[string]int64{}
	for _, p := range gauge.Data.(metricdata.Gauge[int64]).DataPoints {
		v, _ := p.Attributes.Value("pipeline.state")
		counts[v.AsString()] = p.Value
	}
	if counts[string(protocol.StateRunning)] != 1 || counts[string(protocol.StateFailed)] != 0 || len(counts) != 6 {
		t.Errorf("pipelines by state = %v, want running 1 and every state reported", counts)
	}
}

// A panicking handler still ends its span, with an Error status.
func TestMiddlewarePanic(t *testing.T) {
	tel := newTelemetry(t)
	h := manager.Chain(manager.HandlerFunc(func(context.Context, *protocol.Request) protocol.Response { panic("boom") }),
		manager.Recover(nil), corralotel.Middleware(tel.opts()...))
	if resp := h.Handle(t.Context(), request(protocol.TypeInspect, "", nil)); resp.ErrorType != protocol.ErrTypeInternal {
		t.Fatalf("response %+v, want internal_error", resp)
	}
	spans := tel.named(protocol.TypeInspect)
	if len(spans) != 1 || spans[0].Status().Code != codes.Error {
		t.Fatalf("spans %v, want one ended with Error", spans)
	}
}

// The client's CLIENT span is the parent of the manager's SERVER span,
// across a real loopback connection.
func TestCallClientSpan(t *testing.T) {
	r := newRig(t, testConfig())
	addr := testkit.Serve(t, r.h, testConfig(), wait)
	c := &protocol.Client{Addr: addr, Timeout: wait}
	env, err := corralotel.Call(t.Context(), c, request(protocol.TypeListPipelines, "", nil), r.tel.opts()...)
	if err != nil || !env.Response.OK() {
		t.Fatalf("list: %v %+v", err, env)
	}
	var client, server sdktrace.ReadOnlySpan
	for _, s := range r.tel.named(protocol.TypeListPipelines) {
		switch s.SpanKind() {
		case trace.SpanKindClient:
			client = s
		case trace.SpanKindServer:
			server = s
		}
	}
	if client == nil || server == nil {
		t.Fatal("want a client and a server span")
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() || env.Response.TraceID != client.SpanContext().TraceID().String() {
		t.Errorf("server parent %v, response trace %s; want child of client %v", server.Parent().SpanID(),
			env.Response.TraceID, client.SpanContext().SpanID())
	}
	wantAttrs(t, client, attribute.String("rpc.method", "list_pipelines"), attribute.String("corral.outcome", "success"),
		attribute.String("server.address", addr))

	// A transport failure ends the client span with an Error.
	dead := &protocol.Client{Addr: "127.0.0.1:1", Timeout: wait}
	if _, err := corralotel.Call(t.Context(), dead, request(protocol.TypeInspect, "", nil), r.tel.opts()...); err == nil {
		t.Fatal("call to a closed port succeeded")
	}
	spans := r.tel.named(protocol.TypeInspect)
	if len(spans) != 1 || spans[0].Status().Code != codes.Error || attrs(spans[0])["error.type"].AsString() != "transport" {
		t.Errorf("transport failure span %v", spans)
	}
}

func TestTraceparentFunc(t *testing.T) {
	tel := newTelemetry(t)
	ctx, span := tel.tp.Tracer("t").Start(t.Context(), "op")
	defer span.End()
	tp := corralotel.Traceparent()(ctx)
	want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if tp != want {
		t.Errorf("traceparent %q, want %q", tp, want)
	}
	if got := corralotel.Traceparent()(context.Background()); got != "" {
		t.Errorf("traceparent without a span = %q", got)
	}
	if !strings.HasPrefix(tp, "00-") {
		t.Error("not a W3C traceparent")
	}
}
