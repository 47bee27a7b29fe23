package scenarios

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

// Tracing of a run: every span goes to traces.json in the run folder, and
// to an OTLP collector too when the OTEL_* environment names one.
const (
	// TracesFileName is the run folder's trace file: OTLP/JSON lines
	// appended by the harness, the embedded manager and every worker.
	TracesFileName = "traces.json"
	// EnvJaegerURL is the Jaeger UI the report links traces to when they
	// were exported; without it, defaultJaegerURL (make jaeger).
	EnvJaegerURL     = "CORRAL_JAEGER_URL"
	defaultJaegerURL = "http://127.0.0.1:16686"

	serviceManager = "corral"
	serviceHarness = "corral-harness"
	// traceBatchTimeout keeps traces.json at most this stale while a run
	// goes on, so a run that dies keeps most of its spans.
	traceBatchTimeout = time.Second
	// traceFlushBound bounds the flush before the report is written: a
	// collector that is down costs at most this.
	traceFlushBound = 3 * time.Second
)

// Attribute keys of the harness's own spans; rpc.*, error.type, pipeline.id
// and process.pid are those the otel package uses.
const (
	keyRPCSystem    = attribute.Key("rpc.system")
	keyRPCMethod    = attribute.Key("rpc.method")
	keyServerAddr   = attribute.Key("server.address")
	keyErrorType    = attribute.Key("error.type")
	keyPipelineID   = attribute.Key("pipeline.id")
	keyProcessPID   = attribute.Key("process.pid")
	keyOutcome      = attribute.Key("corral.outcome")
	keyHistProcess  = attribute.Key("corral.history.process")
	keyHistIndex    = attribute.Key("corral.history.index")
	keyHistType     = attribute.Key("corral.history.type")
	keyLogical      = attribute.Key("corral.pipeline.logical")
	keyFault        = attribute.Key("corral.fault")
	keyRespTraceID  = attribute.Key("corral.response.trace_id")
	rpcSystemCorral = "corral"
)

// runTracing holds a run's tracer providers. The harness never touches
// the global OpenTelemetry providers: Run may be called from a user's
// test, and the embedded manager and the harness are two services in one
// process. The zero value (tracing off) is usable: spans go nowhere.
type runTracing struct {
	file    string // absolute path of traces.json; "" when tracing is off
	url     string // Jaeger base URL when spans are exported to a collector
	manager trace.TracerProvider
	harness trace.TracerProvider
	tracer  trace.Tracer // the harness's

	stopOnce sync.Once
	stops    []func(context.Context) error
}

// startTracing opens traces.json in dir for the harness (service
// corral-harness) and, when embedded, for the manager (service corral).
// OTEL_SDK_DISABLED=true turns it off; a trace file that cannot be opened
// is an error.
func startTracing(ctx context.Context, dir string, embedded bool, log *slog.Logger) (*runTracing, error) {
	t := &runTracing{}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		t.manager, t.harness = tracenoop(), tracenoop()
		t.tracer = t.harness.Tracer(corralotel.ScopeName)
		return t, nil
	}
	file, err := filepath.Abs(filepath.Join(dir, TracesFileName))
	if err != nil {
		return nil, err
	}
	provider := func(service string) (trace.TracerProvider, error) {
		tp, stop, err := corralotel.NewTracerProvider(ctx, corralotel.WithServiceName(service),
			corralotel.WithTraceFile(file), corralotel.WithBatchTimeout(traceBatchTimeout),
			corralotel.WithShutdownTimeout(traceFlushBound), corralotel.WithLogger(log))
		if err == nil {
			t.stops = append(t.stops, stop)
		}
		return tp, err
	}
	if t.harness, err = provider(serviceHarness); err != nil {
		return nil, err
	}
	t.manager = tracenoop()
	if embedded {
		if t.manager, err = provider(serviceManager); err != nil {
			t.flush()
			return nil, err
		}
	}
	t.file = file
	t.tracer = t.harness.Tracer(corralotel.ScopeName, trace.WithInstrumentationVersion(corralotel.Version))
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		t.url = defaultJaegerURL
		if u := strings.TrimSpace(os.Getenv(EnvJaegerURL)); u != "" {
			t.url = u
		}
	}
	return t, nil
}

func tracenoop() trace.TracerProvider { return noop.NewTracerProvider() }

// workerEnv makes the embedded manager's workers append to traces.json
// (they inherit the OTEL_* variables with the rest of the environment).
func (t *runTracing) workerEnv() []string {
	if t.file == "" {
		return nil
	}
	return []string{corralotel.EnvTraceFile + "=" + t.file}
}

// middleware traces the embedded manager's commands; it goes right inside
// manager.Recover.
func (t *runTracing) middleware() manager.Middleware {
	return corralotel.Middleware(corralotel.WithTracerProvider(t.manager))
}

// hook turns the embedded manager's events into spans.
func (t *runTracing) hook() manager.EventHook {
	return corralotel.EventHook(corralotel.WithTracerProvider(t.manager))
}

// flush exports every span still queued and closes the providers, within
// traceFlushBound (the providers flush concurrently). Safe to call twice;
// spans started afterwards are dropped.
func (t *runTracing) flush() error {
	var errs []error
	t.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), traceFlushBound)
		defer cancel()
		results := make(chan error, len(t.stops))
		for _, stop := range t.stops {
			go func() { results <- stop(ctx) }() // each stop is bounded by ctx
		}
		for range t.stops {
			errs = append(errs, <-results)
		}
	})
	return errors.Join(errs...)
}

// call sends one command inside a CLIENT span of the harness, so the
// request carries its traceparent (the client's Traceparent hook) and the
// manager's and worker's spans join its trace. The trace id returned is
// the response's, or the span's when no response came (a timeout, a cut
// connection): an op with an unknown outcome still has its trace.
// otel.Call is not used because it does not give the span's trace id back
// when the request fails.
func (t *runTracing) call(ctx context.Context, c *protocol.Client, inv Op, logical int, fields map[string]any) (protocol.Response, string, error) {
	method := inv.F
	if !protocol.KnownType(method) {
		method = "unknown"
	}
	attrs := []attribute.KeyValue{keyRPCSystem.String(rpcSystemCorral), keyRPCMethod.String(method),
		keyServerAddr.String(c.Addr), keyHistProcess.String(inv.Process), keyHistIndex.Int(inv.Index)}
	if logical > 0 {
		attrs = append(attrs, keyLogical.Int(logical))
	}
	if inv.PipelineID != "" {
		attrs = append(attrs, keyPipelineID.String(inv.PipelineID))
	}
	ctx, span := t.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()
	resp, err := c.Call(ctx, inv.F, inv.PipelineID, fields)
	traceID := resp.TraceID
	if sc := span.SpanContext(); sc.HasTraceID() {
		own := sc.TraceID().String()
		if traceID == "" {
			traceID = own
		} else if traceID != own {
			// The server did not continue the trace; keep both ends.
			span.SetAttributes(keyRespTraceID.String(traceID))
		}
	}
	if !span.IsRecording() {
		return resp, traceID, err
	}
	if resp.PipelineID != "" && inv.PipelineID == "" {
		span.SetAttributes(keyPipelineID.String(resp.PipelineID))
	}
	typ, _ := classify(err)
	span.SetAttributes(keyHistType.String(typ))
	if err == nil {
		span.SetAttributes(keyOutcome.String("success"))
		return resp, traceID, nil
	}
	span.SetAttributes(keyOutcome.String("failure"), keyErrorType.String(errorType(err)))
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	return resp, traceID, err
}

// errorType names a client error for error.type: the protocol's error type
// for a failure response, else timeout or transport.
func errorType(err error) string {
	var perr *protocol.Error
	switch {
	case errors.As(err, &perr) && perr.Type != "":
		return perr.Type
	case errors.As(err, &perr):
		return "_OTHER"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "transport"
}

// faultSpan is a nemesis operation in progress: a short INTERNAL span
// "chaos.<f>" (f as in the history: crash, heal:crash, manager_sigterm)
// with corral.fault, pipeline.id and, once known, process.pid. Commands
// the fault sends (chaos, inspect) go with its ctx and join its trace.
type faultSpan struct {
	ctx  context.Context
	span trace.Span
	f    string
}

func (t *runTracing) startFault(ctx context.Context, inv Op) *faultSpan {
	attrs := []attribute.KeyValue{keyFault.String(inv.F), keyHistProcess.String(inv.Process), keyHistIndex.Int(inv.Index)}
	if inv.Pipeline > 0 {
		attrs = append(attrs, keyLogical.Int(inv.Pipeline))
	}
	if inv.PipelineID != "" {
		attrs = append(attrs, keyPipelineID.String(inv.PipelineID))
	}
	ctx, span := t.tracer.Start(ctx, "chaos."+inv.F, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	return &faultSpan{ctx: ctx, span: span, f: inv.F}
}

// traceID is the id the nemesis op records ("" when not traced).
func (f *faultSpan) traceID() string {
	if sc := f.span.SpanContext(); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// end closes the span with what the fault observed: process.pid when the
// fault found the worker, an Error status when it failed, and for a fault
// injected (not healed) a chaos.fault event (otel.FaultEvent).
func (f *faultSpan) end(obs map[string]any, err error) {
	defer f.span.End()
	if !f.span.IsRecording() {
		return
	}
	if err != nil {
		f.span.RecordError(err)
		f.span.SetStatus(codes.Error, err.Error())
		return
	}
	var attrs []attribute.KeyValue
	if pid, ok := obs["pid"]; ok {
		if n, ok := asInt(pid); ok && n > 0 {
			attrs = append(attrs, keyProcessPID.Int(n))
			f.span.SetAttributes(keyProcessPID.Int(n))
		}
	}
	if sig, ok := obs["signal"].(string); ok {
		attrs = append(attrs, attribute.String("corral.signal", sig))
	}
	if strings.HasPrefix(f.f, healPrefix) {
		return // a heal undoes a fault; it is not one
	}
	corralotel.FaultEvent(f.ctx, f.f, attrs...)
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), true
	}
	return 0, false
}

// unsampledTraceparent marks the harness's observation polling (inspect,
// list_pipelines every 200 ms) as not sampled, so the manager records no
// spans for it: they would bury the run's traces. Each request gets fresh
// random ids, as W3C Trace Context requires.
func unsampledTraceparent(context.Context) string {
	var traceID [16]byte
	var spanID [8]byte
	for i := range 2 {
		v := rand.Uint64() | 1 // never all zero
		for j := range 8 {
			traceID[8*i+j] = byte(v >> (8 * j))
		}
	}
	v := rand.Uint64() | 1
	for j := range 8 {
		spanID[j] = byte(v >> (8 * j))
	}
	return fmt.Sprintf("00-%s-%s-00", hex.EncodeToString(traceID[:]), hex.EncodeToString(spanID[:]))
}
