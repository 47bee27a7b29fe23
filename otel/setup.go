package otel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	otelglobal "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Environment variables Setup reads (besides those the OTLP exporters and
// the batch span processor read themselves: OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES, ...).
const (
	envSDKDisabled          = "OTEL_SDK_DISABLED"
	envServiceName          = "OTEL_SERVICE_NAME"
	envTracesExporter       = "OTEL_TRACES_EXPORTER"
	envEndpoint             = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint       = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol             = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol       = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envTracesSampler        = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"
	defaultServiceName      = "corral"
	defaultShutdownTimeout  = 2 * time.Second
	errorLogEvery           = 10 * time.Second
	protocolGRPC            = "grpc"
	protocolHTTPProtobuf    = "http/protobuf"
	exporterOTLP            = "otlp"
	exporterConsole         = "console"
	exporterNone            = "none"
	otlpHTTPTracesURLSuffix = "/v1/traces"
)

// SetupOption configures Setup.
type SetupOption interface{ applySetup(*setupConfig) }

type setupOptionFunc func(*setupConfig)

func (f setupOptionFunc) applySetup(c *setupConfig) { f(c) }

type setupConfig struct {
	serviceName     string
	attrs           []attribute.KeyValue
	traceFile       *string
	registerer      promclient.Registerer
	lookup          func(string) (string, bool)
	log             *slog.Logger
	console         io.Writer
	shutdownTimeout time.Duration
	batchTimeout    time.Duration
	processors      []sdktrace.SpanProcessor
}

func newSetupConfig(opts []SetupOption) setupConfig {
	c := setupConfig{lookup: os.LookupEnv, console: os.Stderr, shutdownTimeout: defaultShutdownTimeout}
	for _, o := range opts {
		if o != nil {
			o.applySetup(&c)
		}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c setupConfig) env(key string) string {
	v, _ := c.lookup(key)
	return strings.TrimSpace(v)
}

// WithServiceName sets service.name, overriding OTEL_SERVICE_NAME (workers
// use it to export as "corral-worker" whatever the manager's name is).
// Without it, service.name is OTEL_SERVICE_NAME, or "corral".
func WithServiceName(name string) SetupOption {
	return setupOptionFunc(func(c *setupConfig) { c.serviceName = name })
}

// WithResourceAttributes adds resource attributes (e.g. pipeline.id for a
// worker). service.name and process.pid are always set.
func WithResourceAttributes(attrs ...attribute.KeyValue) SetupOption {
	return setupOptionFunc(func(c *setupConfig) { c.attrs = append(c.attrs, attrs...) })
}

// WithTraceFile appends every span to path as OTLP/JSON lines (see
// FileExporter), besides any other exporter. It overrides CORRAL_TRACE_FILE;
// "" writes no file.
func WithTraceFile(path string) SetupOption {
	return setupOptionFunc(func(c *setupConfig) { c.traceFile = &path })
}

// WithPrometheus makes metrics readable through reg by the OpenTelemetry
// Prometheus exporter; serve it with promhttp. Without it, metrics go
// nowhere and the global meter provider is left as it is.
func WithPrometheus(reg promclient.Registerer) SetupOption {
	return setupOptionFunc(func(c *setupConfig) { c.registerer = reg })
}

// WithEnv replaces os.LookupEnv for the variables Setup itself reads.
func WithEnv(lookup func(string) (string, bool)) SetupOption {
	return setupOptionFunc(func(c *setupConfig) {
		if lookup != nil {
			c.lookup = lookup
		}
	})
}

// WithLogger receives configuration problems and (at most one every 10 s)
// export errors; nil discards them.
func WithLogger(log *slog.Logger) SetupOption {
	return setupOptionFunc(func(c *setupConfig) { c.log = log })
}

// WithConsoleWriter is where OTEL_TRACES_EXPORTER=console writes; the
// default is stderr (a worker's stdout is its command channel).
func WithConsoleWriter(w io.Writer) SetupOption {
	return setupOptionFunc(func(c *setupConfig) {
		if w != nil {
			c.console = w
		}
	})
}

// WithShutdownTimeout bounds the returned shutdown (flush included); the
// default is 2 s.
func WithShutdownTimeout(d time.Duration) SetupOption {
	return setupOptionFunc(func(c *setupConfig) {
		if d > 0 {
			c.shutdownTimeout = d
		}
	})
}

// WithBatchTimeout sets how long spans may wait before export (the SDK's
// default is 5 s, or OTEL_BSP_SCHEDULE_DELAY); short-lived processes such
// as workers want less.
func WithBatchTimeout(d time.Duration) SetupOption {
	return setupOptionFunc(func(c *setupConfig) { c.batchTimeout = d })
}

// WithSpanProcessor adds a span processor (an in-memory exporter for a
// harness or a test, say) besides the configured exporters.
func WithSpanProcessor(p sdktrace.SpanProcessor) SetupOption {
	return setupOptionFunc(func(c *setupConfig) { c.processors = append(c.processors, p) })
}

func isTrue(v string) bool { return strings.EqualFold(v, "true") }

// Configured reports whether the environment asks for any trace export:
// CORRAL_TRACE_FILE, an OTLP endpoint, or OTEL_TRACES_EXPORTER other than
// none, and OTEL_SDK_DISABLED is not true. Processes that only matter when
// traced (workers, the client) call Setup only then.
func Configured(lookup func(string) (string, bool)) bool {
	c := setupConfig{lookup: lookup}
	if isTrue(c.env(envSDKDisabled)) {
		return false
	}
	if c.env(EnvTraceFile) != "" || c.env(envEndpoint) != "" || c.env(envTracesEndpoint) != "" {
		return true
	}
	names := c.env(envTracesExporter)
	return names != "" && !strings.EqualFold(names, exporterNone)
}

// Setup builds trace and meter providers from the standard environment and
// installs them as the global ones, with the W3C trace-context and baggage
// propagators and an error handler that counts errors
// (corral.otel.export_errors) and logs them at most every 10 s.
//
// Traces: OTEL_TRACES_EXPORTER (comma-separated otlp, console, none; the
// default is otlp when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, none otherwise),
// OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or grpc),
// OTEL_TRACES_SAMPLER and _ARG (always_on, always_off, traceidratio and
// their parentbased_ forms; default parentbased_always_on), and the trace
// file (WithTraceFile, CORRAL_TRACE_FILE). With no exporter, spans are
// still made (responses carry trace ids) and go nowhere. OTEL_SDK_DISABLED
// =true installs nothing. Resource: service.name, process.pid, the
// WithResourceAttributes ones and OTEL_RESOURCE_ATTRIBUTES.
//
// A collector that is down never blocks or fails the host: spans are
// queued and dropped when the queue is full, and export errors go to the
// error handler. Invalid environment values are logged and ignored; Setup
// fails only when the trace file cannot be opened or the Prometheus
// exporter cannot be registered.
//
// shutdown flushes and stops the providers within 2 s (WithShutdownTimeout)
// or ctx, whichever is first, then abandons exports still in flight and
// returns once they have ended (at most 1 s later, for an exporter that
// ignores cancellation): no export of this Setup runs or reports an error
// after shutdown returns. It is safe to call twice.
func Setup(ctx context.Context, opts ...SetupOption) (shutdown func(context.Context) error, err error) {
	c := newSetupConfig(opts)
	if isTrue(c.env(envSDKDisabled)) {
		return func(context.Context) error { return nil }, nil
	}
	res, problems := c.resource()
	tp, abandon, more, err := c.tracerProvider(ctx, res)
	if err != nil {
		return nil, err
	}
	problems = append(problems, more...)

	var mp *sdkmetric.MeterProvider
	if c.registerer != nil {
		pe, err := prometheus.New(prometheus.WithRegisterer(c.registerer))
		if err != nil {
			abandon()
			_ = tp.Shutdown(context.Background())
			return nil, fmt.Errorf("otel: prometheus exporter: %w", err)
		}
		mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(pe))
	}

	otelglobal.SetTracerProvider(tp)
	if mp != nil {
		otelglobal.SetMeterProvider(mp)
	}
	otelglobal.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
	handler := &errorHandler{log: c.log}
	handler.count = newCounter(otelglobal.GetMeterProvider().Meter(ScopeName, metric.WithInstrumentationVersion(Version)),
		MetricExportErrors, "{error}", "Telemetry errors (mostly failed exports); never fatal.")
	otelglobal.SetErrorHandler(handler)
	for _, p := range problems {
		c.log.Warn("telemetry configuration ignored", "err", p)
	}
	return c.boundedShutdown(tp, mp, abandon), nil
}

// NewTracerProvider builds the tracer provider Setup would install, from
// the same options and environment, and installs nothing: no global
// provider, propagator or error handler (export errors go to the global
// otel.Handle). It is for a host that traces several services in one
// process, or must not touch the globals of the process it runs in: the
// scenarios harness traces its embedded manager as "corral" and its own
// clients as "corral-harness" inside a user's test binary. WithPrometheus
// does not apply. With OTEL_SDK_DISABLED=true it returns a no-op provider.
// shutdown is bounded as Setup's is, and safe to call twice.
func NewTracerProvider(ctx context.Context, opts ...SetupOption) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	c := newSetupConfig(opts)
	if isTrue(c.env(envSDKDisabled)) {
		return tracenoop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	res, problems := c.resource()
	sdk, abandon, more, err := c.tracerProvider(ctx, res)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range append(problems, more...) {
		c.log.Warn("telemetry configuration ignored", "err", p)
	}
	return sdk, c.boundedShutdown(sdk, nil, abandon), nil
}

// tracerProvider builds the SDK tracer provider with every configured
// exporter; abandon ends the exports still in flight. Only a trace file
// that cannot be opened is an error; other problems are returned to log.
func (c setupConfig) tracerProvider(ctx context.Context, res *resource.Resource) (tp *sdktrace.TracerProvider, abandon func(), problems []error, err error) {
	sampler, serr := c.sampler()
	if serr != nil {
		problems = append(problems, serr)
	}
	var exporters []sdktrace.SpanExporter
	path := c.env(EnvTraceFile)
	if c.traceFile != nil {
		path = *c.traceFile
	}
	if path != "" {
		fe, err := NewFileExporter(path)
		if err != nil {
			return nil, nil, nil, err
		}
		exporters = append(exporters, fe)
	}
	more, eerr := c.spanExporters(ctx)
	exporters = append(exporters, more...)
	problems = append(problems, eerr...)

	// life bounds every export: shutdown cancels it once its own bound has
	// passed, so no export outlives the host's shutdown.
	life, cancel := context.WithCancel(context.Background())
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	var batchOpts []sdktrace.BatchSpanProcessorOption
	if c.batchTimeout > 0 {
		batchOpts = append(batchOpts, sdktrace.WithBatchTimeout(c.batchTimeout))
	}
	for _, e := range exporters {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(boundedExporter{SpanExporter: e, life: life}, batchOpts...))
	}
	for _, p := range c.processors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
	}
	return sdktrace.NewTracerProvider(tpOpts...), cancel, problems, nil
}

// abandonGrace bounds the wait, after exports are abandoned, for the SDK's
// export goroutines to see the cancellation and end. Exporters that honour
// their context (OTLP, file, console) end well within it.
const abandonGrace = time.Second

// boundedShutdown flushes and stops the providers (mp may be nil) within
// the shutdown timeout or ctx, then abandons exports still in flight and
// waits (at most abandonGrace) until they have ended. The returned function
// is safe to call twice.
//
// The SDK is not given the deadline itself: when its Shutdown times out it
// returns while its export goroutine still runs, and that goroutine later
// reports the abandoned export's error to whatever otel.Handle is then
// installed (the next Setup's, in a long-lived host or a test binary).
// Cancelling the exports through life and waiting for Shutdown to finish
// means nothing of this pipeline runs or reports once shutdown returns.
func (c setupConfig) boundedShutdown(tp *sdktrace.TracerProvider, mp *sdkmetric.MeterProvider, abandon func()) func(context.Context) error {
	var once sync.Once
	var shutdownErr error
	return func(ctx context.Context) error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(ctx, c.shutdownTimeout)
			defer cancel()
			// sdkCtx ends only if the exports ignore their cancellation.
			sdkCtx, sdkCancel := context.WithCancel(context.WithoutCancel(ctx))
			defer sdkCancel()
			done := make(chan error, 1)
			go func() {
				errs := []error{tp.Shutdown(sdkCtx)}
				if mp != nil {
					errs = append(errs, mp.Shutdown(sdkCtx))
				}
				done <- errors.Join(errs...)
			}()
			select {
			case err := <-done:
				abandon()
				shutdownErr = err
				return
			case <-ctx.Done():
			}
			abandon()
			grace := time.NewTimer(abandonGrace)
			defer grace.Stop()
			var err error
			select {
			case err = <-done:
			case <-grace.C:
				sdkCancel()
				err = <-done // the SDK returns once sdkCtx ends
			}
			shutdownErr = errors.Join(ctx.Err(), err)
		})
		return shutdownErr
	}
}

func (c setupConfig) resource() (*resource.Resource, []error) {
	name := c.serviceName
	if name == "" {
		name = c.env(envServiceName)
	}
	if name == "" {
		name = defaultServiceName
	}
	attrs := append([]attribute.KeyValue{keyServiceName.String(name), keyProcessPID.Int(os.Getpid())}, c.attrs...)
	own := resource.NewSchemaless(attrs...)
	res, err := resource.Merge(resource.Default(), own)
	if err != nil {
		return own, []error{fmt.Errorf("resource: %w", err)}
	}
	return res, nil
}

// sampler reads OTEL_TRACES_SAMPLER through the lookup (the SDK would read
// os.Getenv itself); an invalid value falls back to parentbased_always_on.
func (c setupConfig) sampler() (sdktrace.Sampler, error) {
	def := sdktrace.ParentBased(sdktrace.AlwaysSample())
	name := strings.ToLower(c.env(envTracesSampler))
	ratio := func() (float64, error) {
		arg := c.env(envTracesSamplerArg)
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("%s=%q: must be a number in [0, 1]", envTracesSamplerArg, arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return def, nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return def, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return def, fmt.Errorf("%s=%q: want always_on, always_off, traceidratio or their parentbased_ forms", envTracesSampler, name)
}

func (c setupConfig) spanExporters(ctx context.Context) ([]sdktrace.SpanExporter, []error) {
	names := c.env(envTracesExporter)
	if names == "" {
		names = exporterNone
		if c.env(envEndpoint) != "" || c.env(envTracesEndpoint) != "" {
			names = exporterOTLP
		}
	}
	var out []sdktrace.SpanExporter
	var problems []error
	for _, name := range strings.Split(names, ",") {
		switch strings.ToLower(strings.TrimSpace(name)) {
		case exporterNone, "":
		case exporterOTLP:
			e, err := c.otlpExporter(ctx)
			if err != nil {
				problems = append(problems, err)
				continue
			}
			out = append(out, e)
		case exporterConsole:
			e, err := stdouttrace.New(stdouttrace.WithWriter(c.console))
			if err != nil {
				problems = append(problems, err)
				continue
			}
			out = append(out, e)
		default:
			problems = append(problems, fmt.Errorf("%s: unknown exporter %q (want otlp, console or none)", envTracesExporter, name))
		}
	}
	return out, problems
}

func (c setupConfig) otlpExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	proto := c.env(envTracesProtocol)
	if proto == "" {
		proto = c.env(envProtocol)
	}
	if proto == "" {
		proto = protocolHTTPProtobuf
	}
	endpoint, generic := c.env(envTracesEndpoint), false
	if endpoint == "" {
		endpoint, generic = c.env(envEndpoint), true
	}
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("OTLP endpoint %q: want a URL such as http://127.0.0.1:4318", endpoint)
		}
	}
	switch proto {
	case protocolGRPC:
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		return otlptracegrpc.New(ctx, opts...)
	case protocolHTTPProtobuf:
		var opts []otlptracehttp.Option
		if endpoint != "" {
			if generic { // the signal's path is appended to the base URL
				endpoint = strings.TrimSuffix(endpoint, "/") + otlpHTTPTracesURLSuffix
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("%s=%q: want grpc or http/protobuf", envProtocol, proto)
}

// boundedExporter ends every export when life ends, whatever deadline the
// batch processor gave it.
type boundedExporter struct {
	sdktrace.SpanExporter
	life context.Context
}

func (b boundedExporter) bound(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.life, cancel)
	return ctx, func() { stop(); cancel() }
}

func (b boundedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, done := b.bound(ctx)
	defer done()
	return b.SpanExporter.ExportSpans(ctx, spans)
}

func (b boundedExporter) Shutdown(ctx context.Context) error {
	ctx, done := b.bound(ctx)
	defer done()
	return b.SpanExporter.Shutdown(ctx)
}

// errorHandler counts every error OpenTelemetry reports and logs one every
// errorLogEvery at most; it never blocks on anything but the log.
type errorHandler struct {
	count   metric.Int64Counter
	log     *slog.Logger
	lastLog atomic.Int64 // unix ns
}

func (h *errorHandler) Handle(err error) {
	h.count.Add(context.Background(), 1)
	now := time.Now().UnixNano()
	last := h.lastLog.Load()
	if last != 0 && now-last < int64(errorLogEvery) {
		return
	}
	if h.lastLog.CompareAndSwap(last, now) {
		h.log.Warn("telemetry error (not fatal; counted in corral.otel.export_errors, logged at most every 10s)", "err", err)
	}
}
