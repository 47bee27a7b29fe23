package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/manager/worker"
	corralotel "github.com/corral-dev/corral/otel"
)

// Telemetry settings of corral serve, beside the OTEL_* environment.
const (
	envMetricsAddr = "CORRAL_METRICS_ADDR"
	// telemetryStop bounds each telemetry shutdown step (the flush, the
	// metrics server), so a dead collector never delays an exit by more.
	telemetryStop = 2 * time.Second
)

// telemetryFlags are serve's own telemetry settings.
type telemetryFlags struct {
	metricsAddr string
	traceFile   string
}

func bindTelemetryFlags(fs *flag.FlagSet) *telemetryFlags {
	f := &telemetryFlags{}
	fs.StringVar(&f.metricsAddr, "metrics-addr", os.Getenv(envMetricsAddr), "")
	fs.StringVar(&f.traceFile, "trace-file", os.Getenv(corralotel.EnvTraceFile), "")
	return f
}

const telemetryUsage = `  --metrics-addr (env CORRAL_METRICS_ADDR, default unset)
      host:port to serve Prometheus metrics on (/metrics), e.g. 127.0.0.1:9464
  --trace-file (env CORRAL_TRACE_FILE, default unset)
      append every span of the manager and its workers to this file as OTLP/JSON lines
  Tracing follows the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT,
  OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_TRACES_EXPORTER, OTEL_TRACES_SAMPLER,
  OTEL_SERVICE_NAME, OTEL_SDK_DISABLED); workers export as corral-worker.
`

// validate checks the flags and makes the trace file's path absolute (the
// workers get it through their environment). Errors name the flag.
func (f *telemetryFlags) validate() error {
	if f.metricsAddr != "" {
		_, port, err := net.SplitHostPort(f.metricsAddr)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 0 || n > 65535 {
			return fmt.Errorf("--metrics-addr (%s) %q is invalid: must be host:port", envMetricsAddr, f.metricsAddr)
		}
	}
	if f.traceFile != "" {
		abs, err := filepath.Abs(f.traceFile)
		if err == nil {
			var file *os.File
			if file, err = os.OpenFile(abs, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
				err = file.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("--trace-file (%s) %q is unusable: %v", corralotel.EnvTraceFile, f.traceFile, err)
		}
		f.traceFile = abs
	}
	return nil
}

// workerEnv is what workers need to trace like the manager: the trace
// file (OTEL_* variables reach them with the rest of the environment).
func (f *telemetryFlags) workerEnv() []string {
	if f.traceFile == "" {
		return nil
	}
	return []string{corralotel.EnvTraceFile + "=" + f.traceFile}
}

// serveTelemetry is serve's tracing and metrics: global providers from
// Setup and, with --metrics-addr, a Prometheus endpoint on its own server.
type serveTelemetry struct {
	log      *slog.Logger
	shutdown func(context.Context) error
	metrics  *http.Server // nil without --metrics-addr
	served   chan error
	gauge    metric.Registration
}

// startTelemetry installs the providers and starts the metrics server.
// OTEL_* problems are logged, never fatal; a metrics address that cannot
// be bound is.
func startTelemetry(ctx context.Context, f *telemetryFlags, log *slog.Logger, stdout io.Writer) (*serveTelemetry, error) {
	t := &serveTelemetry{log: log}
	opts := []corralotel.SetupOption{corralotel.WithLogger(log), corralotel.WithTraceFile(f.traceFile)}
	var reg *promclient.Registry
	var ln net.Listener
	if f.metricsAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", f.metricsAddr); err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
		reg = promclient.NewRegistry()
		opts = append(opts, corralotel.WithPrometheus(reg))
	}
	shutdown, err := corralotel.Setup(ctx, opts...)
	if err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return nil, err
	}
	t.shutdown = shutdown
	if ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
		t.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		t.served = make(chan error, 1)
		go func() { t.served <- t.metrics.Serve(ln) }() // owned: close waits for it
		fmt.Fprintf(stdout, "corral serve: metrics on http://%s/metrics\n", ln.Addr())
	}
	return t, nil
}

// watch registers the pipelines-by-state gauge on m.
func (t *serveTelemetry) watch(m *manager.Manager) {
	reg, err := corralotel.RegisterSnapshotGauge(m)
	if err != nil {
		t.log.Warn("pipelines gauge not registered", "err", err)
		return
	}
	t.gauge = reg
}

// close stops the metrics server and flushes telemetry, each within
// telemetryStop. Call it once the manager has shut down.
func (t *serveTelemetry) close() {
	if t.gauge != nil {
		_ = t.gauge.Unregister()
	}
	if t.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), telemetryStop)
		if err := t.metrics.Shutdown(ctx); err != nil {
			_ = t.metrics.Close()
		}
		cancel()
		if err := <-t.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.log.Warn("metrics server", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), telemetryStop)
	defer cancel()
	if err := t.shutdown(ctx); err != nil {
		t.log.Warn("telemetry flush incomplete", "err", err)
	}
}

// workerMain runs the worker program, traced as service corral-worker when
// the environment asks for traces (the manager's OTEL_* variables and
// CORRAL_TRACE_FILE reach every worker).
func workerMain() int {
	if os.Getenv(protocol.EnvWorkerMode) != worker.ModeWorker || !corralotel.Configured(os.LookupEnv) {
		return worker.Main()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())
	shutdown, err := corralotel.Setup(context.Background(),
		corralotel.WithServiceName("corral-worker"),
		corralotel.WithResourceAttributes(attribute.String("pipeline.id", os.Getenv(protocol.EnvPipelineID))),
		// Workers are killed without notice; short batches lose less.
		corralotel.WithBatchTimeout(500*time.Millisecond),
		corralotel.WithLogger(log))
	if err != nil {
		log.Warn("tracing disabled", "err", err)
		return worker.Main()
	}
	return worker.MainWith(worker.MainOptions{Tracer: corralotel.WorkerTracer(), Flush: shutdown})
}

// clientDo sends req; when the environment asks for traces, inside a
// CLIENT span exported as service corral-client.
func clientDo(c *protocol.Client, req *protocol.Request, stderr io.Writer) (protocol.Envelope, error) {
	if !corralotel.Configured(os.LookupEnv) {
		return c.Do(context.Background(), req)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	shutdown, err := corralotel.Setup(context.Background(), corralotel.WithServiceName("corral-client"), corralotel.WithLogger(log))
	if err != nil {
		log.Warn("tracing disabled", "err", err)
		return c.Do(context.Background(), req)
	}
	env, err := corralotel.Call(context.Background(), c, req)
	ctx, cancel := context.WithTimeout(context.Background(), telemetryStop)
	defer cancel()
	_ = shutdown(ctx)
	return env, err
}
