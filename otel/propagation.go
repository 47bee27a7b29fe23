package otel

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// traceparentKey is the one propagation key the protocol carries.
const traceparentKey = "traceparent"

// traceparentCarrier is a TextMapCarrier holding only the traceparent, so
// reading and writing the protocol field costs no map.
type traceparentCarrier struct{ value string }

func (c *traceparentCarrier) Get(key string) string {
	if key == traceparentKey {
		return c.value
	}
	return ""
}

func (c *traceparentCarrier) Set(key, value string) {
	if key == traceparentKey {
		c.value = value
	}
}

func (c *traceparentCarrier) Keys() []string { return []string{traceparentKey} }

// extract continues the trace named by traceparent, if any.
func extract(ctx context.Context, p propagation.TextMapPropagator, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return p.Extract(ctx, &traceparentCarrier{value: traceparent})
}

// inject returns the traceparent of the span in ctx ("" if none).
func inject(ctx context.Context, p propagation.TextMapPropagator) string {
	var c traceparentCarrier
	p.Inject(ctx, &c)
	return c.value
}

// Traceparent returns a function for protocol.Client.Traceparent that
// sends the span of the request's ctx as a W3C traceparent. It starts no
// span of its own: use Call for a CLIENT span per request.
func Traceparent(opts ...Option) func(ctx context.Context) string {
	c := newConfig(opts)
	return func(ctx context.Context) string { return inject(ctx, c.prop) }
}
