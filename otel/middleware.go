package otel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// commandTypes are the span names and rpc.method values a command can
// have; anything else is "unknown".
func commandTypes() []string {
	return []string{
		protocol.TypeListPipelines, protocol.TypeInit, protocol.TypeWebRTC, protocol.TypeMute,
		protocol.TypeResume, protocol.TypeStatus, protocol.TypeConsumeResult, protocol.TypeTerminate,
		protocol.TypeInspect, protocol.TypeChaos, methodUnknownType,
	}
}

// methodSets holds the metric attributes of each (method, outcome), made
// once so that recording a duration allocates nothing. Read-only after
// construction.
type methodSets map[string][2]metric.RecordOption

func newMethodSets() methodSets {
	types := commandTypes()
	sets := make(methodSets, len(types))
	for _, m := range types {
		sets[m] = [2]metric.RecordOption{
			metric.WithAttributeSet(attribute.NewSet(keyRPCMethod.String(m), keyOutcome.String(outcomeSuccess))),
			metric.WithAttributeSet(attribute.NewSet(keyRPCMethod.String(m), keyOutcome.String(outcomeFailure))),
		}
	}
	return sets
}

func (s methodSets) get(method string, ok bool) metric.RecordOption {
	if ok {
		return s[method][0]
	}
	return s[method][1]
}

// Middleware traces and measures every command, the way otelhttp wraps an
// http.Handler. Per command it starts a SERVER span named after the command
// type that continues the request's traceparent (W3C), hands the inner
// handler a request whose Traceparent is the SERVER span (the manager
// forwards it to the worker), sets Response.TraceID, and records
// corral.command.duration (s, by rpc.method and corral.outcome).
//
// Span attributes: rpc.system "corral", rpc.method, pipeline.id (the
// request's, or for init the new pipeline's), corral.outcome (success or
// failure), and on failure only error.type with an Error status; the status
// stays unset on success. Put it right inside manager.Recover.
func Middleware(opts ...Option) manager.Middleware {
	c := newConfig(opts)
	tracer := c.tracer()
	duration := newDurationHistogram(c.meter(), MetricCommandDuration,
		"Duration of commands handled by the manager, from request to response.")
	sets := newMethodSets()
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			start := time.Now()
			method := methodName(req.Type)
			ctx = extract(ctx, c.prop, req.Traceparent)
			ctx, span := tracer.Start(ctx, method,
				trace.WithSpanKind(trace.SpanKindServer),
				trace.WithTimestamp(start),
				trace.WithAttributes(rpcSystem(), keyRPCMethod.String(method)))
			ended := false
			defer func() {
				if !ended { // the inner handler panicked; Recover answers it
					span.SetStatus(codes.Error, "handler panicked")
					span.End()
				}
			}()

			inner := *req // shallow: Fields is shared, never written
			inner.Traceparent = inject(ctx, c.prop)
			resp := next.Handle(ctx, &inner)

			if sc := span.SpanContext(); sc.HasTraceID() {
				resp.TraceID = sc.TraceID().String()
			}
			if span.IsRecording() {
				id := req.PipelineID
				if resp.PipelineID != "" {
					id = resp.PipelineID
				}
				if id != "" {
					span.SetAttributes(keyPipelineID.String(id))
				}
				endWithResponse(span, resp)
			}
			end := time.Now()
			span.End(trace.WithTimestamp(end))
			ended = true
			duration.Record(ctx, end.Sub(start).Seconds(), sets.get(method, resp.OK()))
			return resp
		})
	}
}

// Call sends req through c inside a CLIENT span named after the command
// type: the request carries the span as its traceparent, and the span ends
// with the outcome (transport errors set an Error status and error.type
// "transport"). A failure response is not a Go error, as with Client.Do.
func Call(ctx context.Context, c *protocol.Client, req *protocol.Request, opts ...Option) (protocol.Envelope, error) {
	cfg := newConfig(opts)
	method := methodName(req.Type)
	ctx, span := cfg.tracer().Start(ctx, method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(rpcSystem(), keyRPCMethod.String(method), keyServerAddress.String(c.Addr)))
	defer span.End()
	out := *req
	out.Traceparent = inject(ctx, cfg.prop)
	env, err := c.Do(ctx, &out)
	if err != nil {
		span.RecordError(err)
		span.SetAttributes(keyOutcome.String(outcomeFailure), keyErrorType.String("transport"))
		span.SetStatus(codes.Error, err.Error())
		return env, err
	}
	if id := env.Response.PipelineID; id != "" {
		span.SetAttributes(keyPipelineID.String(id))
	} else if req.PipelineID != "" {
		span.SetAttributes(keyPipelineID.String(req.PipelineID))
	}
	endWithResponse(span, env.Response)
	return env, nil
}
