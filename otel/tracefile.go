package otel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// EnvTraceFile names a file every Corral process (manager, workers, client)
// appends its spans to, as FileExporter writes them.
const EnvTraceFile = "CORRAL_TRACE_FILE"

// ErrExporterClosed is returned by FileExporter.ExportSpans after Shutdown.
var ErrExporterClosed = errors.New("otel: trace file exporter is shut down")

// FileExporter is a SpanExporter that appends every batch of spans to a
// file as one line of OTLP/JSON: a {"resourceSpans":[...]} object, with hex
// trace and span ids, times as decimal unix-nanosecond strings and
// attributes as OTLP AnyValues, the encoding OTLP/HTTP JSON uses. The file
// is opened with O_APPEND and each batch is one write, so several processes
// (a manager and its workers) can append to the same file without
// interleaving lines.
type FileExporter struct {
	mu     sync.Mutex
	f      *os.File // nil after Shutdown
	closed bool
}

var _ sdktrace.SpanExporter = (*FileExporter)(nil)

// NewFileExporter opens (creating if needed) the file at path for appending.
func NewFileExporter(path string) (*FileExporter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("otel: trace file: %w", err)
	}
	return &FileExporter{f: f}, nil
}

// ExportSpans appends spans as one line. It implements sdktrace.SpanExporter.
func (e *FileExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	line, err := json.Marshal(encodeSpans(spans))
	if err != nil {
		return fmt.Errorf("otel: trace file: encode: %w", err)
	}
	line = append(line, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrExporterClosed
	}
	if _, err := e.f.Write(line); err != nil {
		return fmt.Errorf("otel: trace file: %w", err)
	}
	return nil
}

// Shutdown closes the file. Safe to call twice.
func (e *FileExporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	return e.f.Close()
}

// OTLP/JSON shapes (opentelemetry-proto, trace/v1), only what we write.
type (
	otlpTraces struct {
		ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
	}
	otlpResourceSpans struct {
		Resource   otlpResource     `json:"resource"`
		ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
		SchemaURL  string           `json:"schemaUrl,omitempty"`
	}
	otlpResource struct {
		Attributes []otlpKeyValue `json:"attributes"`
	}
	otlpScopeSpans struct {
		Scope     otlpScope  `json:"scope"`
		Spans     []otlpSpan `json:"spans"`
		SchemaURL string     `json:"schemaUrl,omitempty"`
	}
	otlpScope struct {
		Name       string         `json:"name"`
		Version    string         `json:"version,omitempty"`
		Attributes []otlpKeyValue `json:"attributes,omitempty"`
	}
	otlpSpan struct {
		TraceID                string         `json:"traceId"`
		SpanID                 string         `json:"spanId"`
		TraceState             string         `json:"traceState,omitempty"`
		ParentSpanID           string         `json:"parentSpanId,omitempty"`
		Flags                  uint32         `json:"flags,omitempty"`
		Name                   string         `json:"name"`
		Kind                   int            `json:"kind"`
		StartTimeUnixNano      string         `json:"startTimeUnixNano"`
		EndTimeUnixNano        string         `json:"endTimeUnixNano"`
		Attributes             []otlpKeyValue `json:"attributes,omitempty"`
		DroppedAttributesCount int            `json:"droppedAttributesCount,omitempty"`
		Events                 []otlpEvent    `json:"events,omitempty"`
		DroppedEventsCount     int            `json:"droppedEventsCount,omitempty"`
		Links                  []otlpLink     `json:"links,omitempty"`
		DroppedLinksCount      int            `json:"droppedLinksCount,omitempty"`
		Status                 otlpStatus     `json:"status"`
	}
	otlpEvent struct {
		TimeUnixNano           string         `json:"timeUnixNano"`
		Name                   string         `json:"name"`
		Attributes             []otlpKeyValue `json:"attributes,omitempty"`
		DroppedAttributesCount int            `json:"droppedAttributesCount,omitempty"`
	}
	otlpLink struct {
		TraceID    string         `json:"traceId"`
		SpanID     string         `json:"spanId"`
		TraceState string         `json:"traceState,omitempty"`
		Attributes []otlpKeyValue `json:"attributes,omitempty"`
	}
	otlpStatus struct {
		Message string `json:"message,omitempty"`
		Code    int    `json:"code,omitempty"`
	}
	otlpKeyValue struct {
		Key   string       `json:"key"`
		Value otlpAnyValue `json:"value"`
	}
	otlpAnyValue struct {
		StringValue *string    `json:"stringValue,omitempty"`
		BoolValue   *bool      `json:"boolValue,omitempty"`
		IntValue    *string    `json:"intValue,omitempty"` // int64 as a string, as proto3 JSON
		DoubleValue any        `json:"doubleValue,omitempty"`
		ArrayValue  *otlpArray `json:"arrayValue,omitempty"`
	}
	otlpArray struct {
		Values []otlpAnyValue `json:"values"`
	}
)

// OTLP status codes differ from the Go API's: UNSET 0, OK 1, ERROR 2.
func otlpStatusCode(c codes.Code) int {
	switch c {
	case codes.Ok:
		return 1
	case codes.Error:
		return 2
	}
	return 0
}

// encodeSpans groups spans by resource and scope, keeping their order.
func encodeSpans(spans []sdktrace.ReadOnlySpan) otlpTraces {
	type scopeKey struct {
		res   *resource.Resource
		scope instrumentation.Scope
	}
	var out otlpTraces
	resIndex := map[*resource.Resource]int{}
	scopeIndex := map[scopeKey]int{}
	for _, s := range spans {
		res := s.Resource()
		ri, ok := resIndex[res]
		if !ok {
			ri = len(out.ResourceSpans)
			resIndex[res] = ri
			rs := otlpResourceSpans{Resource: otlpResource{Attributes: []otlpKeyValue{}}}
			if res != nil && res.Len() > 0 {
				rs.Resource.Attributes = encodeAttrs(res.Attributes())
				rs.SchemaURL = res.SchemaURL()
			}
			out.ResourceSpans = append(out.ResourceSpans, rs)
		}
		rs := &out.ResourceSpans[ri]
		key := scopeKey{res: res, scope: s.InstrumentationScope()}
		si, ok := scopeIndex[key]
		if !ok {
			si = len(rs.ScopeSpans)
			scopeIndex[key] = si
			sc := s.InstrumentationScope()
			rs.ScopeSpans = append(rs.ScopeSpans, otlpScopeSpans{
				Scope: otlpScope{Name: sc.Name, Version: sc.Version,
					Attributes: encodeAttrs(sc.Attributes.ToSlice())},
				SchemaURL: sc.SchemaURL,
			})
		}
		rs.ScopeSpans[si].Spans = append(rs.ScopeSpans[si].Spans, encodeSpan(s))
	}
	return out
}

func encodeSpan(s sdktrace.ReadOnlySpan) otlpSpan {
	sc := s.SpanContext()
	flags := uint32(sc.TraceFlags()) | 0x100 // the parent's remoteness is known
	if s.Parent().IsRemote() {
		flags |= 0x200
	}
	out := otlpSpan{
		TraceID:                sc.TraceID().String(),
		SpanID:                 sc.SpanID().String(),
		TraceState:             sc.TraceState().String(),
		Flags:                  flags,
		Name:                   s.Name(),
		Kind:                   int(s.SpanKind()),
		StartTimeUnixNano:      unixNano(s.StartTime().UnixNano()),
		EndTimeUnixNano:        unixNano(s.EndTime().UnixNano()),
		Attributes:             encodeAttrs(s.Attributes()),
		DroppedAttributesCount: s.DroppedAttributes(),
		DroppedEventsCount:     s.DroppedEvents(),
		DroppedLinksCount:      s.DroppedLinks(),
		Status:                 otlpStatus{Code: otlpStatusCode(s.Status().Code), Message: s.Status().Description},
	}
	if p := s.Parent(); p.HasSpanID() {
		out.ParentSpanID = p.SpanID().String()
	}
	for _, ev := range s.Events() {
		out.Events = append(out.Events, otlpEvent{
			TimeUnixNano: unixNano(ev.Time.UnixNano()), Name: ev.Name,
			Attributes: encodeAttrs(ev.Attributes), DroppedAttributesCount: ev.DroppedAttributeCount,
		})
	}
	for _, l := range s.Links() {
		out.Links = append(out.Links, otlpLink{
			TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String(),
			TraceState: l.SpanContext.TraceState().String(), Attributes: encodeAttrs(l.Attributes),
		})
	}
	return out
}

func unixNano(n int64) string { return strconv.FormatInt(n, 10) }

func encodeAttrs(attrs []attribute.KeyValue) []otlpKeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]otlpKeyValue, len(attrs))
	for i, kv := range attrs {
		out[i] = otlpKeyValue{Key: string(kv.Key), Value: encodeValue(kv.Value)}
	}
	return out
}

func encodeValue(v attribute.Value) otlpAnyValue {
	str := func(s string) otlpAnyValue { return otlpAnyValue{StringValue: &s} }
	boolean := func(b bool) otlpAnyValue { return otlpAnyValue{BoolValue: &b} }
	integer := func(n int64) otlpAnyValue { s := strconv.FormatInt(n, 10); return otlpAnyValue{IntValue: &s} }
	double := func(f float64) otlpAnyValue {
		// JSON has no NaN or infinities; proto3 JSON spells them as strings.
		switch {
		case math.IsNaN(f):
			return otlpAnyValue{DoubleValue: "NaN"}
		case math.IsInf(f, 1):
			return otlpAnyValue{DoubleValue: "Infinity"}
		case math.IsInf(f, -1):
			return otlpAnyValue{DoubleValue: "-Infinity"}
		}
		return otlpAnyValue{DoubleValue: f}
	}
	switch v.Type() {
	case attribute.BOOL:
		return boolean(v.AsBool())
	case attribute.INT64:
		return integer(v.AsInt64())
	case attribute.FLOAT64:
		return double(v.AsFloat64())
	case attribute.STRING:
		return str(v.AsString())
	case attribute.BOOLSLICE:
		return arrayOf(v.AsBoolSlice(), boolean)
	case attribute.INT64SLICE:
		return arrayOf(v.AsInt64Slice(), integer)
	case attribute.FLOAT64SLICE:
		return arrayOf(v.AsFloat64Slice(), double)
	case attribute.STRINGSLICE:
		return arrayOf(v.AsStringSlice(), str)
	}
	return str(v.Emit())
}

// arrayOf converts a slice attribute element by element.
func arrayOf[T any](xs []T, conv func(T) otlpAnyValue) otlpAnyValue {
	vals := make([]otlpAnyValue, 0, len(xs))
	for _, x := range xs {
		vals = append(vals, conv(x))
	}
	return otlpAnyValue{ArrayValue: &otlpArray{Values: vals}}
}
