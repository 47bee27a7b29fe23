package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

// otelRatios measures the tracing middleware's cost on a status round trip
// (client -> loopback TCP -> manager -> in-memory worker -> back): one
// manager served three ways in this process — bare, the Middleware on no-op
// providers, and on the SDK with an in-memory exporter — requests
// interleaved one by one with a rotating order for d, and returns the
// medians' ratios sdk/bare and noop/bare. Interleaving puts the machine's
// noise on every variant alike.
func otelRatios(ctx context.Context, d time.Duration) (sdkRatio, noopRatio float64, err error) {
	cfg := manager.DefaultConfig()
	cfg.Port = 0
	cfg.HealthCheckInterval = time.Hour // probes would be noise
	m, err := manager.New(cfg, manager.Options{Launcher: launch.NewMemory(launch.MemoryConfig{})})
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = errors.Join(err, m.Shutdown(sctx))
	}()
	memory := tracetest.NewInMemoryExporter()
	sdkTP := sdktrace.NewTracerProvider(sdktrace.WithBatcher(memory))
	sdkMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = sdkTP.Shutdown(context.Background()); _ = sdkMP.Shutdown(context.Background()) }()

	handlers := []manager.Handler{
		manager.Chain(m, manager.Recover(nil)),
		manager.Chain(m, manager.Recover(nil), corralotel.Middleware(
			corralotel.WithTracerProvider(tracenoop.NewTracerProvider()), corralotel.WithMeterProvider(metricnoop.NewMeterProvider()))),
		manager.Chain(m, manager.Recover(nil), corralotel.Middleware(
			corralotel.WithTracerProvider(sdkTP), corralotel.WithMeterProvider(sdkMP))),
	}
	addrs := make([]string, len(handlers))
	for i, h := range handlers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		srv := manager.NewServer(h, cfg, nil)
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = srv.Serve(ln)
		}()
		defer func() {
			_ = srv.Close()
			<-served
		}()
		addrs[i] = ln.Addr().String()
	}
	c := &protocol.Client{Addr: addrs[0], Timeout: 10 * time.Second}
	id, err := c.Init(ctx, protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: benchVideo}})
	if err != nil {
		return 0, 0, fmt.Errorf("bench: otel: init: %w", err)
	}
	frame := request(protocol.TypeStatus, id)
	samples := make([][]time.Duration, len(addrs))
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		for k := range addrs {
			v := (i + k) % len(addrs) // no variant always goes first
			t0 := time.Now()
			if _, err := roundTrip(ctx, addrs[v], frame, 10*time.Second); err != nil {
				return 0, 0, fmt.Errorf("bench: otel: %w", err)
			}
			samples[v] = append(samples[v], time.Since(t0))
		}
		if i%4096 == 0 {
			memory.Reset() // keep memory flat; the exporter still gets every span
		}
	}
	bare := median(samples[0])
	if bare <= 0 {
		return 0, 0, errNoAnswer
	}
	return float64(median(samples[2])) / float64(bare), float64(median(samples[1])) / float64(bare), nil
}
