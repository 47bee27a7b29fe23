package scenarios

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// readRunTraces decodes every span of a run's traces.json.
func readRunTraces(t *testing.T, path string) map[string][]traceSpan {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("traces.json: %v", err)
	}
	defer f.Close()
	spans, bad, err := readTraces(f, nil)
	if err != nil || bad > 0 {
		t.Fatalf("traces.json: %d bad lines, %v", bad, err)
	}
	return spans
}

func hasAttr(s traceSpan, key string) bool {
	return slices.ContainsFunc(s.Attrs, func(a string) bool { return strings.HasPrefix(a, key+"=") })
}

// checkRunTraces asserts what an embedded run keeps of its traces: spans
// of the manager, its workers and the harness in traces.json; every
// client op's trace there with a manager span; every fault a span with
// its trace id in the nemesis op; a waterfall for a failing op.
func checkRunTraces(t *testing.T, rep *Report) {
	t.Helper()
	d := rep.Data
	if d.TracesFile != filepath.Join(mustAbs(t, d.Dir), TracesFileName) {
		t.Fatalf("RunData.TracesFile = %q, want traces.json in the run folder %s", d.TracesFile, d.Dir)
	}
	traces := readRunTraces(t, d.TracesFile)
	services := map[string]bool{}
	for _, spans := range traces {
		for _, s := range spans {
			services[s.Service] = true
		}
	}
	for _, want := range []string{serviceManager, "corral-worker", serviceHarness} {
		if !services[want] {
			t.Errorf("traces.json has no span of service %s (services: %v)", want, services)
		}
	}
	serviceIn := func(id, service string) bool {
		return slices.ContainsFunc(traces[id], func(s traceSpan) bool { return s.Service == service })
	}
	clientOps, withManager, failing := 0, 0, 0
	for _, o := range d.Ops {
		if o.Type == OpInvoke {
			continue
		}
		if o.TraceID == "" {
			t.Errorf("op %d (%s %s %s) has no trace id", o.Index, o.Process, o.F, o.Type)
			continue
		}
		if o.Process == Nemesis {
			name := "chaos." + o.F
			if !slices.ContainsFunc(traces[o.TraceID], func(s traceSpan) bool { return s.Name == name && s.Service == serviceHarness }) {
				t.Errorf("nemesis op %d (%s): no %s span in trace %s", o.Index, o.F, name, o.TraceID)
			}
			continue
		}
		clientOps++
		if serviceIn(o.TraceID, serviceHarness) && serviceIn(o.TraceID, serviceManager) {
			withManager++
		}
		if o.Type == OpFail || o.Type == OpInfo {
			failing++
		}
	}
	if withManager == 0 {
		t.Errorf("none of %d client ops has a trace with both a harness and a manager span", clientOps)
	}
	// The crash found its worker: the fault's span names the pid and
	// carries a chaos.fault event.
	crash := false
	for _, spans := range traces {
		for _, s := range spans {
			if s.Name == "chaos.crash" && hasAttr(s, "pipeline.id") && hasAttr(s, "process.pid") &&
				slices.ContainsFunc(s.Events, func(e traceEvent) bool { return e.Name == "chaos.fault" }) {
				crash = true
			}
		}
	}
	if !crash {
		t.Error("no chaos.crash span with pipeline.id, process.pid and a chaos.fault event")
	}
	// The hung queue makes commands fail; each is drawn from traces.json.
	if failing == 0 {
		t.Fatal("no client op failed: the scenario no longer exercises the waterfall")
	}
	views, note := traceViews(d)
	drawn := slices.ContainsFunc(views, func(v traceView) bool {
		classes := map[string]bool{}
		for _, s := range v.Spans {
			classes[strings.Fields(s.Class)[0]] = true
		}
		return classes["svc-client"] && classes["svc-manager"]
	})
	if !drawn {
		t.Errorf("no failing op drawn with client and manager spans (note %q)", note)
	}
	html, err := os.ReadFile(filepath.Join(d.Dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), `aria-label="trace waterfall"`) {
		t.Error("report.html has no trace waterfall")
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// A command that gets no answer is info with the trace id of its CLIENT
// span, which traces.json holds with the timeout as its error.
func TestTracedCallWithoutAnswer(t *testing.T) {
	dir := t.TempDir()
	tr, err := startTracing(t.Context(), dir, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.flush()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() { // accepts and never answers; ends when ln closes
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	c := &protocol.Client{Addr: ln.Addr().String(), Timeout: 200 * time.Millisecond, Traceparent: unsampledTraceparent}
	inv := Op{Index: 7, Process: "client-1", Type: OpInvoke, F: protocol.TypeStatus, PipelineID: "p-1", Invoke: -1}
	_, traceID, err := tr.call(t.Context(), c, inv, 1, nil)
	if typ, _ := classify(err); typ != OpInfo {
		t.Fatalf("err %v classified %s, want info", err, typ)
	}
	if len(traceID) != 32 {
		t.Fatalf("trace id %q, want the client span's", traceID)
	}
	if err := tr.flush(); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("listener goroutine did not end")
	}
	spans := readRunTraces(t, tr.file)[traceID]
	if len(spans) != 1 {
		t.Fatalf("trace %s has %d spans in traces.json, want the CLIENT span", traceID, len(spans))
	}
	s := spans[0]
	if s.Service != serviceHarness || s.Name != protocol.TypeStatus || !s.Error ||
		!slices.Contains(s.Attrs, "error.type=timeout") || !slices.Contains(s.Attrs, "corral.history.index=7") {
		t.Errorf("span %+v: want %s status with an Error status, error.type=timeout and the history index", s, serviceHarness)
	}
}
