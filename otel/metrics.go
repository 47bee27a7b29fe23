package otel

import (
	"context"

	otelglobal "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// Metric names. Units are UCUM.
const (
	MetricCommandDuration  = "corral.command.duration"   // s, by rpc.method, corral.outcome
	MetricProbeDuration    = "corral.probe.duration"     // s, by corral.outcome
	MetricTimeouts         = "corral.timeouts"           // {timeout}, by corral.command
	MetricStaleResponses   = "corral.stale_responses"    // {response}, by corral.garbage
	MetricWorkerExits      = "corral.worker.exits"       // {exit}, by corral.exit.reason
	MetricPipelines        = "corral.pipelines"          // {pipeline}, by pipeline.state
	MetricTimeoutCurrent   = "corral.timeout.current"    // s, by corral.command
	MetricShutdownDuration = "corral.shutdown.duration"  // s, by corral.shutdown.phase
	MetricExportErrors     = "corral.otel.export_errors" // {error}
)

// secondsBuckets suit durations from a loopback round trip (~100 µs) to a
// shutdown (tens of seconds); the SDK's default buckets are for ms.
func secondsBuckets() metric.HistogramOption {
	return metric.WithExplicitBucketBoundaries(
		0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
		0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
}

// handled reports an instrument that could not be made to the global
// error handler and falls back to a no-op one: metrics never break the host.
func handled[T any](inst T, err error, fallback T) T {
	if err != nil {
		otelglobal.Handle(err)
		return fallback
	}
	return inst
}

func newDurationHistogram(m metric.Meter, name, desc string) metric.Float64Histogram {
	h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), secondsBuckets())
	return handled[metric.Float64Histogram](h, err, noop.Float64Histogram{})
}

func newCounter(m metric.Meter, name, unit, desc string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	return handled[metric.Int64Counter](c, err, noop.Int64Counter{})
}

// RegisterSnapshotGauge registers the observable gauge corral.pipelines
// ({pipeline}, by pipeline.state), pulled from src.Snapshot() whenever a
// reader collects. Every known state is reported, zeros included, so a
// state that empties drops to 0. Unregister it before src goes away.
func RegisterSnapshotGauge(src interface{ Snapshot() manager.Snapshot }, opts ...Option) (metric.Registration, error) {
	meter := newConfig(opts).meter()
	gauge, err := meter.Int64ObservableGauge(MetricPipelines, metric.WithUnit("{pipeline}"),
		metric.WithDescription("Pipelines in the manager's table, by state."))
	if err != nil {
		return nil, err
	}
	states := []protocol.State{protocol.StateIdle, protocol.StateStarting, protocol.StateRunning,
		protocol.StatePaused, protocol.StateTerminating, protocol.StateFailed}
	sets := make([]metric.ObserveOption, len(states))
	for i, s := range states {
		sets[i] = metric.WithAttributeSet(attribute.NewSet(keyPipelineState.String(string(s))))
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		counts := src.Snapshot().CountByState()
		for i, s := range states {
			o.ObserveInt64(gauge, int64(counts[s]), sets[i])
		}
		return nil
	}, gauge)
}
