package otel_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	otelglobal "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	corralotel "github.com/corral-dev/corral/otel"
)

// keepGlobals restores the global providers Setup replaces.
func keepGlobals(t *testing.T) {
	tp, mp, prop, eh := otelglobal.GetTracerProvider(), otelglobal.GetMeterProvider(),
		otelglobal.GetTextMapPropagator(), otelglobal.GetErrorHandler()
	t.Cleanup(func() {
		otelglobal.SetTracerProvider(tp)
		otelglobal.SetMeterProvider(mp)
		otelglobal.SetTextMapPropagator(prop)
		otelglobal.SetErrorHandler(eh)
	})
}

func env(kv ...string) corralotel.SetupOption {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return corralotel.WithEnv(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

func TestSetupDisabled(t *testing.T) {
	keepGlobals(t)
	before := otelglobal.GetTracerProvider()
	path := filepath.Join(t.TempDir(), "traces.json")
	shutdown, err := corralotel.Setup(t.Context(), env("OTEL_SDK_DISABLED", "true", "CORRAL_TRACE_FILE", path))
	if err != nil {
		t.Fatal(err)
	}
	if otelglobal.GetTracerProvider() != before {
		t.Error("OTEL_SDK_DISABLED=true still installed a tracer provider")
	}
	if err := shutdown(t.Context()); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("disabled SDK wrote a trace file: %v", err)
	}
}

func TestConfigured(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want bool
	}{
		{nil, false},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"}, true},
		{[]string{"CORRAL_TRACE_FILE", "/tmp/x"}, true},
		{[]string{"OTEL_TRACES_EXPORTER", "none"}, false},
		{[]string{"OTEL_TRACES_EXPORTER", "console"}, true},
		{[]string{"CORRAL_TRACE_FILE", "/tmp/x", "OTEL_SDK_DISABLED", "TRUE"}, false},
	} {
		m := map[string]string{}
		for i := 0; i < len(tc.env); i += 2 {
			m[tc.env[i]] = tc.env[i+1]
		}
		if got := corralotel.Configured(func(k string) (string, bool) { v, ok := m[k]; return v, ok }); got != tc.want {
			t.Errorf("Configured(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A collector that is down neither blocks the host nor fails it, and the
// bounded shutdown returns in time.
func TestSetupUnreachableCollector(t *testing.T) {
	for _, proto := range []string{"http/protobuf", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			keepGlobals(t)
			reg := promclient.NewRegistry()
			shutdown, err := corralotel.Setup(t.Context(),
				env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+closedPort(t), "OTEL_EXPORTER_OTLP_PROTOCOL", proto),
				corralotel.WithBatchTimeout(10*time.Millisecond), corralotel.WithShutdownTimeout(500*time.Millisecond),
				corralotel.WithPrometheus(reg))
			if err != nil {
				t.Fatal(err)
			}
			tracer := otelglobal.GetTracerProvider().Tracer("t")
			start := time.Now()
			for range 1000 {
				_, span := tracer.Start(t.Context(), "op")
				span.End()
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("1000 spans took %v with the collector down", d)
			}
			time.Sleep(50 * time.Millisecond) // let a batch fail
			start = time.Now()
			_ = shutdown(context.Background()) // an error is fine: the flush could not finish
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("shutdown took %v, bound 500ms", d)
			}
			if err := shutdown(context.Background()); err != nil && time.Since(start) > 3*time.Second {
				t.Error("second shutdown call is not immediate")
			}
		})
	}
}

// An export abandoned at shutdown has ended, and reported its error, by the
// time shutdown returns: nothing of one Setup reaches the error handler of
// the next.
func TestSetupShutdownEndsAbandonedExports(t *testing.T) {
	keepGlobals(t)
	exporting := make(chan struct{}, 1)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case exporting <- struct{}{}:
		default:
		}
		// A collector that never answers. The body is read first: the
		// server notices the client hanging up only after that.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer collector.Close()
	var logs syncBuffer
	shutdown, err := corralotel.Setup(t.Context(),
		env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL),
		corralotel.WithBatchTimeout(time.Millisecond), corralotel.WithShutdownTimeout(100*time.Millisecond),
		corralotel.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	_, span := otelglobal.GetTracerProvider().Tracer("t").Start(t.Context(), "op")
	span.End()
	select {
	case <-exporting:
	case <-time.After(wait):
		t.Fatal("no export reached the collector")
	}
	if err := shutdown(context.Background()); err == nil {
		t.Error("shutdown = nil, want the deadline error of the abandoned flush")
	}
	if got := logs.String(); !strings.Contains(got, "telemetry error") {
		t.Errorf("shutdown returned before the abandoned export reported its error; log: %q", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSetupExportErrorsCounted(t *testing.T) {
	keepGlobals(t)
	reg := promclient.NewRegistry()
	shutdown, err := corralotel.Setup(t.Context(), env(), corralotel.WithPrometheus(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	count := func() float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "corral_otel_export_errors_total" {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	// Counted as a difference: an export of an earlier test still in
	// flight (the unreachable collector's) may report to this handler too.
	before := count()
	otelglobal.Handle(os.ErrDeadlineExceeded)
	otelglobal.Handle(os.ErrDeadlineExceeded)
	if got := count() - before; got != 2 {
		t.Errorf("corral_otel_export_errors_total grew by %v, want 2", got)
	}
}

func TestSetupSampler(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg string
		sampled      bool
	}{
		{"", "", true},
		{"always_off", "", false},
		{"traceidratio", "0", false},
		{"parentbased_traceidratio", "1", true},
		{"bogus", "", true}, // ignored, default
	} {
		t.Run(tc.sampler, func(t *testing.T) {
			keepGlobals(t)
			shutdown, err := corralotel.Setup(t.Context(), env("OTEL_TRACES_SAMPLER", tc.sampler, "OTEL_TRACES_SAMPLER_ARG", tc.arg))
			if err != nil {
				t.Fatal(err)
			}
			defer shutdown(context.Background())
			_, span := otelglobal.GetTracerProvider().Tracer("t").Start(t.Context(), "op")
			span.End()
			if got := span.SpanContext().IsSampled(); got != tc.sampled {
				t.Errorf("sampled = %v, want %v", got, tc.sampled)
			}
		})
	}
}

// otlpLine is the part of an OTLP/JSON line the tests read.
type otlpLine struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []otlpKV `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Scope struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"scope"`
			Spans []struct {
				TraceID           string   `json:"traceId"`
				SpanID            string   `json:"spanId"`
				ParentSpanID      string   `json:"parentSpanId"`
				Name              string   `json:"name"`
				Kind              int      `json:"kind"`
				StartTimeUnixNano string   `json:"startTimeUnixNano"`
				EndTimeUnixNano   string   `json:"endTimeUnixNano"`
				Attributes        []otlpKV `json:"attributes"`
				Events            []struct {
					TimeUnixNano string   `json:"timeUnixNano"`
					Name         string   `json:"name"`
					Attributes   []otlpKV `json:"attributes"`
				} `json:"events"`
				Status struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"status"`
			} `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

type otlpKV struct {
	Key   string                     `json:"key"`
	Value map[string]json.RawMessage `json:"value"`
}

func kvs(list []otlpKV) map[string]string {
	out := map[string]string{}
	for _, kv := range list {
		for typ, v := range kv.Value {
			out[kv.Key] = typ + "=" + string(v)
		}
	}
	return out
}

func readLines(t *testing.T, path string) []otlpLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []otlpLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l otlpLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not JSON: %v", len(out)+1, err)
		}
		out = append(out, l)
	}
	return out
}

func TestTraceFileShape(t *testing.T) {
	keepGlobals(t)
	path := filepath.Join(t.TempDir(), "traces.json")
	shutdown, err := corralotel.Setup(t.Context(), env("CORRAL_TRACE_FILE", path),
		corralotel.WithServiceName("corral-worker"), corralotel.WithResourceAttributes(attribute.String("pipeline.id", "p1")))
	if err != nil {
		t.Fatal(err)
	}
	tracer := otelglobal.GetTracerProvider().Tracer(corralotel.ScopeName, trace.WithInstrumentationVersion(corralotel.Version))
	ctx, parent := tracer.Start(t.Context(), "init", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("s", "x"), attribute.Int("i", 7), attribute.Float64("f", 1.5),
			attribute.Bool("b", true), attribute.StringSlice("l", []string{"a", "b"})))
	_, child := tracer.Start(ctx, "frame")
	child.AddEvent("tick", trace.WithAttributes(attribute.Int("n", 1)))
	child.SetStatus(codes.Error, "bad frame")
	child.End()
	parent.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}

	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want one per batch (1)", len(lines))
	}
	rs := lines[0].ResourceSpans
	if len(rs) != 1 || len(rs[0].ScopeSpans) != 1 {
		t.Fatalf("want one resource with one scope: %+v", rs)
	}
	res := kvs(rs[0].Resource.Attributes)
	if res["service.name"] != `stringValue="corral-worker"` || res["pipeline.id"] != `stringValue="p1"` ||
		res["process.pid"] != `intValue="`+itoa(os.Getpid())+`"` {
		t.Errorf("resource attributes %v", res)
	}
	ss := rs[0].ScopeSpans[0]
	if ss.Scope.Name != corralotel.ScopeName || ss.Scope.Version != corralotel.Version || len(ss.Spans) != 2 {
		t.Fatalf("scope %+v with %d spans", ss.Scope, len(ss.Spans))
	}
	hex32, hex16, nanos := regexp.MustCompile(`^[0-9a-f]{32}$`), regexp.MustCompile(`^[0-9a-f]{16}$`), regexp.MustCompile(`^[0-9]{19}$`)
	c, p := ss.Spans[0], ss.Spans[1] // end order
	for _, s := range ss.Spans {
		if !hex32.MatchString(s.TraceID) || !hex16.MatchString(s.SpanID) || !nanos.MatchString(s.StartTimeUnixNano) || !nanos.MatchString(s.EndTimeUnixNano) {
			t.Errorf("span %s ids/times %q %q %q %q", s.Name, s.TraceID, s.SpanID, s.StartTimeUnixNano, s.EndTimeUnixNano)
		}
	}
	if c.Name != "frame" || c.ParentSpanID != p.SpanID || c.TraceID != p.TraceID || p.ParentSpanID != "" {
		t.Errorf("parent links: child %s parent %q; parent %s %q", c.Name, c.ParentSpanID, p.SpanID, p.ParentSpanID)
	}
	if p.Kind != 2 || c.Kind != 1 {
		t.Errorf("kinds %d %d, want 2 (server) and 1 (internal)", p.Kind, c.Kind)
	}
	if c.Status.Code != 2 || c.Status.Message != "bad frame" || p.Status.Code != 0 {
		t.Errorf("status %+v %+v, want OTLP ERROR (2) and unset", c.Status, p.Status)
	}
	if len(c.Events) != 1 || c.Events[0].Name != "tick" || kvs(c.Events[0].Attributes)["n"] != `intValue="1"` {
		t.Errorf("events %+v", c.Events)
	}
	got := kvs(p.Attributes)
	want := map[string]string{"s": `stringValue="x"`, "i": `intValue="7"`, "f": `doubleValue=1.5`, "b": `boolValue=true`,
		"l": `arrayValue={"values":[{"stringValue":"a"},{"stringValue":"b"}]}`}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %s, want %s", k, got[k], v)
		}
	}
}

// Several writers (processes, here exporters) append whole lines.
func TestTraceFileConcurrentAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "traces.json")
	const writers, batches = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		exp, err := corralotel.NewFileExporter(path)
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tp.Shutdown(context.Background())
			tracer := tp.Tracer("w")
			for range batches {
				_, s := tracer.Start(context.Background(), "w"+itoa(w), trace.WithAttributes(attribute.String("pad", strings.Repeat("x", 8000))))
				s.End()
			}
		}()
	}
	wg.Wait()
	if lines := readLines(t, path); len(lines) != writers*batches {
		t.Errorf("%d lines, want %d", len(lines), writers*batches)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: spans go to its /v1/traces.
func TestSetupOTLPHTTPEndpoint(t *testing.T) {
	keepGlobals(t)
	got := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type")
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	shutdown, err := corralotel.Setup(t.Context(), env("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL+"/",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
	if err != nil {
		t.Fatal(err)
	}
	_, span := otelglobal.GetTracerProvider().Tracer("t").Start(t.Context(), "op")
	span.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		if req != "POST /v1/traces application/x-protobuf" {
			t.Errorf("collector got %q", req)
		}
	case <-time.After(wait):
		t.Fatal("collector got nothing")
	}
}

// NewTracerProvider exports like Setup (here to the trace file, as the
// given service) and leaves every global alone; disabled, it is a no-op.
func TestNewTracerProvider(t *testing.T) {
	tp0, prop0, eh0 := otelglobal.GetTracerProvider(), otelglobal.GetTextMapPropagator(), otelglobal.GetErrorHandler()
	path := filepath.Join(t.TempDir(), "traces.json")
	tp, shutdown, err := corralotel.NewTracerProvider(t.Context(), env(),
		corralotel.WithServiceName("corral-harness"), corralotel.WithTraceFile(path))
	if err != nil {
		t.Fatal(err)
	}
	if otelglobal.GetTracerProvider() != tp0 || otelglobal.GetTextMapPropagator() != prop0 || otelglobal.GetErrorHandler() != eh0 {
		t.Error("NewTracerProvider changed a global")
	}
	_, span := tp.Tracer("t").Start(t.Context(), "op")
	span.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := shutdown(t.Context()); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"op"`, `"stringValue":"corral-harness"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("trace file lacks %s:\n%s", want, b)
		}
	}

	off := filepath.Join(t.TempDir(), "off.json")
	tp, shutdown, err = corralotel.NewTracerProvider(t.Context(), env("OTEL_SDK_DISABLED", "true"), corralotel.WithTraceFile(off))
	if err != nil {
		t.Fatal(err)
	}
	if _, span := tp.Tracer("t").Start(t.Context(), "op"); span.IsRecording() {
		t.Error("disabled SDK records spans")
	}
	if err := shutdown(t.Context()); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(off); !os.IsNotExist(err) {
		t.Errorf("disabled SDK wrote a trace file: %v", err)
	}
}
