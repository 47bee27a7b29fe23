package otel_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	// The innermost handler stands in for a *manager.Manager.
	inner := manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
		fmt.Println("forwarded traceparent continues the trace:", req.Traceparent[3:35] == "4bf92f3577b34da6a3ce929d0e0e4736")
		return protocol.Success(nil)
	})
	h := manager.Chain(inner, manager.Recover(nil), corralotel.Middleware(corralotel.WithTracerProvider(tp)))

	resp := h.Handle(context.Background(), &protocol.Request{
		Type: protocol.TypeListPipelines,
		// A client's W3C traceparent.
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	})
	s := spans.Ended()[0]
	fmt.Println(resp.TraceID)
	fmt.Println(s.Name(), s.SpanKind(), s.Parent().SpanID())
	// Output:
	// forwarded traceparent continues the trace: true
	// 4bf92f3577b34da6a3ce929d0e0e4736
	// list_pipelines server 00f067aa0ba902b7
}
