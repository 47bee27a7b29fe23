package otel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

// A worker whose queue hangs: probes time out, become failing probe spans
// and timeout spans, and the pipeline is killed as unhealthy.
func TestProbeTimeoutSpans(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.HealthCheckInterval = 20 * time.Millisecond
	cfg.HealthCheckTimeout = 300 * time.Millisecond
	cfg.ProbeTimeoutFloor = 50 * time.Millisecond
	cfg.MaxHealthFailures = 2
	r := newRig(t, cfg)
	resp := r.h.Handle(t.Context(), initRequest())
	if !resp.OK() {
		t.Fatalf("init: %+v", resp)
	}
	id := resp.PipelineID
	r.ev.WaitFor(t, "successful probe", func(e manager.Event) bool {
		p, ok := e.(manager.ProbeResult)
		return ok && p.Err == nil
	})
	if resp := r.h.Handle(t.Context(), request(protocol.TypeChaos, id, map[string]any{"fault": "hang_queue"})); !resp.OK() {
		t.Fatalf("chaos: %+v", resp)
	}
	ev := r.ev.WaitFor(t, "timed-out probe", func(e manager.Event) bool {
		p, ok := e.(manager.ProbeResult)
		return ok && p.TimedOut
	}).(manager.ProbeResult)
	r.ev.WaitFor(t, "unhealthy exit", func(e manager.Event) bool {
		x, ok := e.(manager.WorkerExited)
		return ok && x.Reason == manager.ExitUnhealthy
	})

	var probe, timeout, exit sdktrace.ReadOnlySpan
	for _, s := range r.tel.spans.Ended() {
		a := attrs(s)
		switch {
		case s.Name() == "probe" && a["corral.probe.timed_out"].AsBool() && probe == nil:
			probe = s
		case s.Name() == "timeout" && a["corral.command"].AsString() == "probe" && timeout == nil:
			timeout = s
		case s.Name() == "worker_exit":
			exit = s
		}
	}
	if probe == nil || timeout == nil || exit == nil {
		t.Fatalf("spans: probe %v timeout %v exit %v", probe != nil, timeout != nil, exit != nil)
	}
	wantAttrs(t, probe, attribute.String("pipeline.id", id), attribute.String("corral.outcome", "failure"))
	if probe.Status().Code != codes.Error || probe.SpanKind() != trace.SpanKindInternal {
		t.Errorf("probe span status %v kind %v", probe.Status(), probe.SpanKind())
	}
	if d := probe.EndTime().Sub(probe.StartTime()); d < ev.Duration/2 {
		t.Errorf("probe span lasts %v, the probe %v", d, ev.Duration)
	}
	if timeout.Status().Code != codes.Error || timeout.EndTime().Sub(timeout.StartTime()) <= 0 {
		t.Errorf("timeout span status %v, duration %v", timeout.Status(), timeout.EndTime().Sub(timeout.StartTime()))
	}
	wantAttrs(t, exit, attribute.String("pipeline.id", id), attribute.String("corral.exit.reason", "unhealthy"),
		attribute.Int("process.pid", 0))
	if _, ok := attrs(exit)["process.exit.code"]; !ok || exit.Status().Code != codes.Error {
		t.Errorf("worker_exit span: attrs %v status %v", attrs(exit), exit.Status())
	}

	opts := []metricdatatest.Option{metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreValue(), metricdatatest.IgnoreExemplars()}
	probes := r.tel.metric(t, corralotel.MetricProbeDuration)
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: corralotel.MetricProbeDuration, Unit: "s",
		Description: "Duration of health probes, from request to answer or deadline.",
		Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
			{Attributes: attribute.NewSet(attribute.String("corral.outcome", "success"))},
			{Attributes: attribute.NewSet(attribute.String("corral.outcome", "failure"))},
		}},
	}, probes, opts...)
	timeouts := r.tel.metric(t, corralotel.MetricTimeouts)
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: corralotel.MetricTimeouts, Unit: "{timeout}",
		Description: "Commands and probes a worker did not answer within their deadline.",
		Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: attribute.NewSet(attribute.String("corral.command", "probe"))},
		}},
	}, timeouts, opts...)
	exits := r.tel.metric(t, corralotel.MetricWorkerExits)
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: corralotel.MetricWorkerExits, Unit: "{exit}", Description: "Worker processes reaped, by reason.",
		Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: attribute.NewSet(attribute.String("corral.exit.reason", "unhealthy")), Value: 1},
		}},
	}, exits, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
	current := r.tel.metric(t, corralotel.MetricTimeoutCurrent)
	if current.Unit != "s" {
		t.Errorf("%s unit %q", current.Name, current.Unit)
	}
	if _, ok := current.Data.(metricdata.Gauge[float64]); !ok {
		t.Errorf("%s is a %T, want a gauge", current.Name, current.Data)
	}
}

// Shutdown is one span with a child per phase, and a duration per phase.
func TestShutdownSpans(t *testing.T) {
	r := newRig(t, testConfig())
	if resp := r.h.Handle(t.Context(), initRequest()); !resp.OK() {
		t.Fatalf("init: %+v", resp)
	}
	r.shutdown(t)
	roots := r.tel.named("shutdown")
	if len(roots) != 1 {
		t.Fatalf("%d shutdown spans, want 1", len(roots))
	}
	root := roots[0]
	wantAttrs(t, root, attribute.Int("corral.shutdown.pipelines", 1), attribute.Int("corral.shutdown.survivors", 0))
	for i, name := range []string{"mark", "terminate", "kill"} {
		spans := r.tel.named("shutdown." + name)
		if len(spans) != 1 {
			t.Fatalf("%d shutdown.%s spans, want 1", len(spans), name)
		}
		s := spans[0]
		if s.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("shutdown.%s is not a child of shutdown", name)
		}
		if s.StartTime().Before(root.StartTime()) || s.EndTime().After(root.EndTime()) {
			t.Errorf("shutdown.%s [%v, %v] outside shutdown [%v, %v]", name, s.StartTime(), s.EndTime(), root.StartTime(), root.EndTime())
		}
		wantAttrs(t, s, attribute.String("corral.shutdown.phase", name), attribute.Int("corral.shutdown.phase_number", i+1))
	}
	got := r.tel.metric(t, corralotel.MetricShutdownDuration)
	point := func(phase string) metricdata.HistogramDataPoint[float64] {
		return metricdata.HistogramDataPoint[float64]{Attributes: attribute.NewSet(attribute.String("corral.shutdown.phase", phase))}
	}
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: corralotel.MetricShutdownDuration, Unit: "s",
		Description: "Duration of each phase of the manager's bounded shutdown.",
		Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
			point("mark"), point("terminate"), point("kill"),
		}},
	}, got, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreValue(), metricdatatest.IgnoreExemplars())
	// The worker left as requested: a state change and an exit, no error.
	exits := r.tel.named("worker_exit")
	if len(exits) != 1 || exits[0].Status().Code != codes.Unset {
		t.Errorf("worker_exit spans %v", exits)
	}
	if len(r.tel.named("pipeline_state")) == 0 {
		t.Error("no pipeline_state span")
	}
}

// Events without a live manager: each becomes the documented span.
func TestEventHookSpans(t *testing.T) {
	tel := newTelemetry(t)
	hook := corralotel.EventHook(tel.opts()...)
	at := manager.At{Time: time.Now()}
	hook(manager.StaleResponse{At: at, PipelineID: "p", RequestID: "c7", Garbage: false})
	hook(manager.PipelineError{At: at, PipelineID: "p", Op: "mute", Err: errors.New("broken")})
	hook(manager.TimeoutChanged{At: at, PipelineID: "p", Command: "status", Before: time.Second, After: 2 * time.Second})
	hook(manager.CommandTimedOut{At: at, PipelineID: "p", Command: "status", RequestID: "c8", After: time.Second})
	hook(manager.WorkerExited{At: at, PipelineID: "p", Pid: 42, Code: 3, Reason: manager.ExitCrashed})

	stale := tel.named("stale_response")
	if len(stale) != 1 {
		t.Fatal("no stale_response span")
	}
	wantAttrs(t, stale[0], attribute.String("corral.request_id", "c7"), attribute.Bool("corral.garbage", false))
	perr := tel.named("pipeline_error")
	if len(perr) != 1 || perr[0].Status().Code != codes.Error || len(perr[0].Events()) != 1 {
		t.Errorf("pipeline_error spans %v", perr)
	}
	changed := tel.named("timeout_changed")
	if len(changed) != 1 {
		t.Fatal("no timeout_changed span")
	}
	wantAttrs(t, changed[0], attribute.Float64("corral.timeout.before", 1), attribute.Float64("corral.timeout.after", 2))
	to := tel.named("timeout")
	if len(to) != 1 || to[0].EndTime().Sub(to[0].StartTime()) != time.Second {
		t.Errorf("timeout span should cover the deadline: %v", to)
	}
	exit := tel.named("worker_exit")
	if len(exit) != 1 || exit[0].Status().Code != codes.Error {
		t.Fatalf("crash exit spans %v", exit)
	}
	wantAttrs(t, exit[0], attribute.Int("process.pid", 42), attribute.Int("process.exit.code", 3))

	gauge := tel.metric(t, corralotel.MetricTimeoutCurrent)
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: corralotel.MetricTimeoutCurrent, Unit: "s", Description: "The latest adaptive deadline set for a command kind.",
		Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{
			{Attributes: attribute.NewSet(attribute.String("corral.command", "status")), Value: 2},
		}},
	}, gauge, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
	stales := tel.metric(t, corralotel.MetricStaleResponses)
	if stales.Unit != "{response}" {
		t.Errorf("%s unit %q", stales.Name, stales.Unit)
	}
}

func TestFaultEvent(t *testing.T) {
	tel := newTelemetry(t)
	ctx, span := tel.tp.Tracer("t").Start(context.Background(), "chaos op")
	corralotel.FaultEvent(ctx, "hang_queue", attribute.String("pipeline.id", "p"))
	span.End()
	evs := tel.named("chaos op")[0].Events()
	if len(evs) != 1 || evs[0].Name != "chaos.fault" {
		t.Fatalf("events %v, want one chaos.fault", evs)
	}
	want := map[attribute.Key]string{"corral.fault": "hang_queue", "pipeline.id": "p"}
	for _, kv := range evs[0].Attributes {
		if want[kv.Key] != kv.Value.AsString() {
			t.Errorf("event attribute %s = %s", kv.Key, kv.Value.Emit())
		}
	}
}
