package otel

import (
	otelglobal "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of every span and instrument this
// package makes.
const ScopeName = "github.com/corral-dev/corral/otel"

// Version is the version of this instrumentation.
const Version = "0.1.0"

// defaultFrameSampleEvery is how often WorkerTracer traces a frame.
const defaultFrameSampleEvery = 100

// Option configures Middleware, EventHook, RegisterSnapshotGauge,
// WorkerTracer, Call and Traceparent. An option that does not concern the
// function it is given to is ignored.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp         trace.TracerProvider
	mp         metric.MeterProvider
	prop       propagation.TextMapPropagator
	frameEvery int
}

func newConfig(opts []Option) config {
	c := config{frameEvery: defaultFrameSampleEvery}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.tp == nil {
		c.tp = otelglobal.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otelglobal.GetMeterProvider()
	}
	if c.prop == nil {
		// The wire carries a W3C traceparent whatever the global
		// propagator is (it is a no-op until Setup runs).
		c.prop = propagation.TraceContext{}
	}
	return c
}

func (c config) tracer() trace.Tracer {
	return c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version))
}

func (c config) meter() metric.Meter {
	return c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
}

// WithTracerProvider sets the tracer provider; the default is the global
// one (otel.GetTracerProvider at the time of the call).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets the meter provider; the default is the global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithPropagators sets how the protocol's traceparent field is read and
// written; the default is W3C Trace Context, whatever the global
// propagator is. Only the "traceparent" key travels on the wire.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) { c.prop = p })
}

// WithFrameSampleEvery makes WorkerTracer trace the first frame and every
// n-th one after it; n <= 0 keeps the default, 100.
func WithFrameSampleEvery(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.frameEvery = n
		}
	})
}
