package otel

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/manager/worker"
)

// WorkerTracer implements worker.Tracer. Each command that carries a
// traceparent (client commands do; the manager's health probes do not) is
// a SERVER span named after its type that continues that trace, with rpc.system, rpc.method, corral.outcome and, on failure,
// error.type with an Error status. Frame processing is an INTERNAL span
// "frame" (corral.frame.id), a child of the init command's span, for the
// first frame and every n-th one after it (WithFrameSampleEvery, default
// 100). Export it as service "corral-worker" (Setup with WithServiceName).
func WorkerTracer(opts ...Option) worker.Tracer {
	c := newConfig(opts)
	return &workerTracer{tracer: c.tracer(), prop: c.prop, every: c.frameEvery}
}

type workerTracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	every  int
}

var _ worker.Tracer = (*workerTracer)(nil)

func noReply(protocol.Response) {}

func (w *workerTracer) Command(ctx context.Context, cmdType, traceparent string) (context.Context, func(protocol.Response)) {
	if traceparent == "" {
		// Health probes carry none: a worker span outside any manager
		// trace would be a lone root every probe interval.
		return ctx, noReply
	}
	method := methodName(cmdType)
	ctx = extract(ctx, w.prop, traceparent)
	ctx, span := w.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(rpcSystem(), keyRPCMethod.String(method)))
	return ctx, func(resp protocol.Response) {
		endWithResponse(span, resp)
		span.End()
	}
}

func noEnd() {}

func (w *workerTracer) Frame(ctx context.Context, frameID int) func() {
	if frameID != 1 && frameID%w.every != 0 {
		return noEnd
	}
	_, span := w.tracer.Start(ctx, "frame", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(keyFrameID.Int(frameID)))
	return func() { span.End() }
}
