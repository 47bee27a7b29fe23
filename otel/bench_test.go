package otel_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

// variant is one way of serving the same manager.
type variant struct {
	name   string
	client *protocol.Client
}

// BenchmarkRoundTrip measures a status round trip (client -> manager over
// loopback TCP -> in-memory worker -> back) through one manager served
// bare, with the Middleware on no-op providers, and with the SDK exporting
// to an in-memory exporter (plus OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT
// is set, e.g. a local Jaeger). The "interleaved" sub-benchmark alternates
// the variants request by request and reports the median ratios
// instrumented/bare measured in that same run (noop/bare, sdk/bare).
func BenchmarkRoundTrip(b *testing.B) {
	cfg := testConfig()
	cfg.HealthCheckInterval = 30 * time.Second // probes would be noise
	m, err := manager.New(cfg, manager.Options{Launcher: launch.NewMemory(launch.MemoryConfig{})})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			b.Error(err)
		}
	}()
	resp := m.Handle(context.Background(), initRequest())
	if !resp.OK() {
		b.Fatalf("init: %+v", resp)
	}
	id := resp.PipelineID

	memory := tracetest.NewInMemoryExporter()
	sdkTP := sdktrace.NewTracerProvider(sdktrace.WithBatcher(memory))
	sdkMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer sdkTP.Shutdown(context.Background())
	defer sdkMP.Shutdown(context.Background())
	chains := []struct {
		name string
		tp   trace.TracerProvider
		mp   metric.MeterProvider
	}{
		{"bare", nil, nil},
		{"noop", tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider()},
		{"sdk", sdkTP, sdkMP},
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		otlpTP := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
		defer otlpTP.Shutdown(context.Background())
		chains = append(chains, struct {
			name string
			tp   trace.TracerProvider
			mp   metric.MeterProvider
		}{"otlp", otlpTP, sdkMP})
	}
	var variants []variant
	for _, c := range chains {
		h := manager.Chain(m, manager.Recover(nil))
		if c.tp != nil {
			h = manager.Chain(m, manager.Recover(nil),
				corralotel.Middleware(corralotel.WithTracerProvider(c.tp), corralotel.WithMeterProvider(c.mp)))
		}
		variants = append(variants, variant{c.name, &protocol.Client{Addr: testkit.Serve(b, h, cfg, wait), Timeout: wait}})
	}
	ctx := context.Background()
	call := func(b *testing.B, c *protocol.Client) {
		if _, err := c.Status(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	drain := func(i int) {
		if i%4096 == 0 {
			memory.Reset() // keep memory flat; the exporter still gets every span
		}
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				call(b, v.client)
				drain(i)
			}
		})
	}
	b.Run("interleaved", func(b *testing.B) {
		samples := make([][]time.Duration, len(variants))
		for i := 0; b.Loop(); i++ {
			for k := range variants {
				// Rotate the order so no variant always goes first.
				v := (i + k) % len(variants)
				start := time.Now()
				call(b, variants[v].client)
				samples[v] = append(samples[v], time.Since(start))
			}
			drain(i)
		}
		bare := median(samples[0])
		b.ReportMetric(float64(bare.Nanoseconds()), "bare-median-ns")
		for v := 1; v < len(variants); v++ {
			b.ReportMetric(float64(median(samples[v]))/float64(bare), variants[v].name+"/bare")
		}
	})
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 1
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
