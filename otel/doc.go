// Package otel instruments Corral with OpenTelemetry from the outside, the
// way otelhttp wraps an http.Handler: the manager/... packages import no
// OpenTelemetry, and this package plugs into their seams.
//
//   - Middleware wraps the manager's Handler chain: a SERVER span and a
//     duration per command, continuing the request's traceparent and
//     forwarding the SERVER span to the worker.
//   - EventHook turns the manager's typed events (probes, timeouts, stale
//     responses, worker exits, state changes, shutdown phases, errors) into
//     spans and metrics; FaultEvent records chaos faults.
//   - RegisterSnapshotGauge pulls pipelines-by-state from Snapshot().
//   - WorkerTracer implements worker.Tracer for the worker process:
//     command spans and sampled frame spans, children of the manager's.
//   - Call and Traceparent trace the protocol client.
//   - Setup builds providers from the standard OTEL_* environment, with a
//     trace file (FileExporter, OTLP/JSON lines) and a Prometheus reader;
//     NewTracerProvider builds the same tracer provider without touching
//     the globals, for a host that traces several services in one process.
//
// Every function takes the global providers unless given
// WithTracerProvider or WithMeterProvider. Metric names are under
// "corral." with UCUM units; see the Metric* constants.
package otel
