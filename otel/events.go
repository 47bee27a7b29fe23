package otel

import (
	"context"
	"sync"
	"time"

	otelglobal "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/corral-dev/corral/manager"
)

// EventHook turns the manager's events into spans and metrics. Events come
// without a client's ctx, so each is its own INTERNAL span named after its
// Kind, a root span:
//
//   - probe: one span per health probe, from its start to its answer, with
//     pipeline.id, corral.outcome, corral.probe.timed_out,
//     corral.health.consecutive_failures and an Error status on failure;
//     corral.probe.duration (s, by corral.outcome).
//   - timeout: a span covering the deadline that passed, Error status;
//     corral.timeouts ({timeout}, by corral.command).
//   - timeout_changed: a zero-length span with the old and new deadline;
//     corral.timeout.current (s, by corral.command, the latest value).
//   - stale_response: a zero-length span; corral.stale_responses.
//   - worker_exit: a zero-length span with process.pid, process.exit.code
//     and corral.exit.reason, Error status for crashes and unhealthy
//     workers; corral.worker.exits ({exit}, by corral.exit.reason).
//   - pipeline_state: a zero-length span with the states left and entered.
//   - shutdown: one span from the first phase's start to the last phase's
//     end, with a child span per phase (shutdown.mark, shutdown.terminate,
//     shutdown.kill); corral.shutdown.duration (s, by corral.shutdown.phase).
//   - pipeline_error: a zero-length span with the error, Error status.
//
// The hook never blocks: spans go to the provider's processors.
func EventHook(opts ...Option) manager.EventHook {
	c := newConfig(opts)
	m := c.meter()
	h := &eventHook{
		tracer: c.tracer(),
		probeDuration: newDurationHistogram(m, MetricProbeDuration,
			"Duration of health probes, from request to answer or deadline."),
		shutdownDuration: newDurationHistogram(m, MetricShutdownDuration,
			"Duration of each phase of the manager's bounded shutdown."),
		timeouts: newCounter(m, MetricTimeouts, "{timeout}",
			"Commands and probes a worker did not answer within their deadline."),
		stale: newCounter(m, MetricStaleResponses, "{response}",
			"Worker replies dropped because nobody waited for them."),
		exits: newCounter(m, MetricWorkerExits, "{exit}", "Worker processes reaped, by reason."),
	}
	g, err := m.Float64Gauge(MetricTimeoutCurrent, metric.WithUnit("s"),
		metric.WithDescription("The latest adaptive deadline set for a command kind."))
	h.timeoutCurrent = handled[metric.Float64Gauge](g, err, noop.Float64Gauge{})
	return h.handle
}

type eventHook struct {
	tracer           trace.Tracer
	probeDuration    metric.Float64Histogram
	shutdownDuration metric.Float64Histogram
	timeouts         metric.Int64Counter
	stale            metric.Int64Counter
	exits            metric.Int64Counter
	timeoutCurrent   metric.Float64Gauge

	mu          sync.Mutex
	shutdown    trace.Span // nil outside a shutdown
	shutdownCtx context.Context
	phases      map[int]trace.Span
}

func (h *eventHook) handle(e manager.Event) {
	ctx := context.Background()
	switch e := e.(type) {
	case manager.ProbeResult:
		outcome := outcomeSuccess
		if e.Err != nil {
			outcome = outcomeFailure
		}
		h.probeDuration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(keyOutcome.String(outcome)))
		_, span := h.tracer.Start(ctx, e.Kind(), trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithTimestamp(e.When().Add(-e.Duration)),
			trace.WithAttributes(keyPipelineID.String(e.PipelineID), keyOutcome.String(outcome),
				keyTimedOut.Bool(e.TimedOut), keyFailures.Int(e.ConsecutiveFailures),
				keyNextInterval.Float64(e.NextInterval.Seconds())))
		if e.Err != nil {
			span.RecordError(e.Err, trace.WithTimestamp(e.When()))
			span.SetStatus(codes.Error, e.Err.Error())
		}
		span.End(trace.WithTimestamp(e.When()))

	case manager.CommandTimedOut:
		h.timeouts.Add(ctx, 1, metric.WithAttributes(keyCommand.String(e.Command)))
		_, span := h.tracer.Start(ctx, e.Kind(), trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithTimestamp(e.When().Add(-e.After)),
			trace.WithAttributes(keyPipelineID.String(e.PipelineID), keyCommand.String(e.Command),
				keyRequestID.String(e.RequestID), keyTimeout.Float64(e.After.Seconds())))
		span.SetStatus(codes.Error, "worker did not answer "+e.Command+" within "+e.After.String())
		span.End(trace.WithTimestamp(e.When()))

	case manager.TimeoutChanged:
		h.timeoutCurrent.Record(ctx, e.After.Seconds(), metric.WithAttributes(keyCommand.String(e.Command)))
		h.instant(ctx, e, nil, keyPipelineID.String(e.PipelineID), keyCommand.String(e.Command),
			keyTimeoutBefore.Float64(e.Before.Seconds()), keyTimeoutAfter.Float64(e.After.Seconds()))

	case manager.StaleResponse:
		h.stale.Add(ctx, 1, metric.WithAttributes(keyGarbage.Bool(e.Garbage)))
		h.instant(ctx, e, nil, keyPipelineID.String(e.PipelineID), keyRequestID.String(e.RequestID),
			keyGarbage.Bool(e.Garbage))

	case manager.WorkerExited:
		h.exits.Add(ctx, 1, metric.WithAttributes(keyExitReason.String(e.Reason)))
		attrs := []attribute.KeyValue{keyPipelineID.String(e.PipelineID), keyProcessPID.Int(e.Pid),
			keyExitCode.Int(e.Code), keyExitReason.String(e.Reason), keyExitKilled.Bool(e.Killed)}
		if e.Signal != "" {
			attrs = append(attrs, keyExitSignal.String(e.Signal))
		}
		var fail error
		if e.Reason == manager.ExitCrashed || e.Reason == manager.ExitUnhealthy {
			fail = exitError{reason: e.Reason}
		}
		h.instant(ctx, e, fail, attrs...)

	case manager.PipelineStateChanged:
		h.instant(ctx, e, nil, keyPipelineID.String(e.PipelineID),
			keyStateFrom.String(string(e.From)), keyStateTo.String(string(e.To)))

	case manager.PipelineError:
		h.instant(ctx, e, e.Err, keyPipelineID.String(e.PipelineID), keyOp.String(e.Op))

	case manager.ShutdownPhase:
		h.shutdownPhase(ctx, e)
	}
}

type exitError struct{ reason string }

func (e exitError) Error() string { return "worker " + e.reason }

// instant records an event without a duration as a zero-length span; a
// non-nil fail gives it an Error status.
func (h *eventHook) instant(ctx context.Context, e manager.Event, fail error, attrs ...attribute.KeyValue) {
	at := trace.WithTimestamp(e.When())
	_, span := h.tracer.Start(ctx, e.Kind(), trace.WithSpanKind(trace.SpanKindInternal), at,
		trace.WithAttributes(attrs...))
	if fail != nil {
		span.RecordError(fail, at)
		span.SetStatus(codes.Error, fail.Error())
	}
	span.End(at)
}

// shutdownPhase opens the shutdown span at the first phase start, a child
// span per phase, and closes the shutdown span at the last phase's end.
func (h *eventHook) shutdownPhase(ctx context.Context, e manager.ShutdownPhase) {
	const lastPhase = 3
	at := trace.WithTimestamp(e.When())
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shutdown == nil {
		h.shutdownCtx, h.shutdown = h.tracer.Start(ctx, "shutdown",
			trace.WithSpanKind(trace.SpanKindInternal), at,
			trace.WithAttributes(keyPipelines.Int(e.Pipelines)))
		h.phases = map[int]trace.Span{}
	}
	if !e.Done {
		_, span := h.tracer.Start(h.shutdownCtx, "shutdown."+e.Name,
			trace.WithSpanKind(trace.SpanKindInternal), at,
			trace.WithAttributes(keyPhase.String(e.Name), keyPhaseNumber.Int(e.Phase), keyPipelines.Int(e.Pipelines)))
		h.phases[e.Phase] = span
		return
	}
	h.shutdownDuration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(keyPhase.String(e.Name)))
	if span, ok := h.phases[e.Phase]; ok {
		span.SetAttributes(keySurvivors.Int(e.Survivors))
		if e.Survivors > 0 && e.Phase == lastPhase {
			span.SetStatus(codes.Error, "workers survived SIGKILL")
		}
		span.End(at)
		delete(h.phases, e.Phase)
	}
	if e.Phase == lastPhase {
		h.shutdown.SetAttributes(keySurvivors.Int(e.Survivors))
		if e.Survivors > 0 {
			h.shutdown.SetStatus(codes.Error, "workers survived SIGKILL")
		}
		h.shutdown.End(at)
		h.shutdown, h.shutdownCtx, h.phases = nil, nil, nil
	}
}

// FaultEvent records an injected chaos fault: a span event "chaos.fault"
// (attribute corral.fault = name, plus attrs) on the span of ctx when it is
// recording, otherwise a short INTERNAL span "chaos.fault" of the global
// tracer provider.
func FaultEvent(ctx context.Context, name string, attrs ...attribute.KeyValue) {
	all := append([]attribute.KeyValue{keyFault.String(name)}, attrs...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("chaos.fault", trace.WithAttributes(all...))
		return
	}
	tracer := otelglobal.GetTracerProvider().Tracer(ScopeName, trace.WithInstrumentationVersion(Version))
	now := time.Now()
	_, span := tracer.Start(ctx, "chaos.fault", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(now), trace.WithAttributes(all...))
	span.End(trace.WithTimestamp(now))
}
