package scenarios

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// smallRun is a run with one failing request (an info with a trace), a
// crash detected in time, a hang fault and a clean shutdown.
func smallRun(t *testing.T, withTraces bool) *RunData {
	t.Helper()
	h := &hist{}
	h.call(0, 20, "client-1", "init", "", OpOK, map[string]any{"status": "success"}, "")
	h.ops[1].PipelineID = "p1"
	h.call(100, 15, "client-1", "status", "p1", OpOK, map[string]any{"report": map[string]any{}}, "")
	h.call(200, 12, "client-2", "consume_result", "p1", OpOK, map[string]any{"outputs": []any{}, "frames_metadata": []any{}}, "")
	h.fault(300, 800, "hang_queue", "p1", map[string]any{"pid": 101})
	inv := h.invoke(400, "client-2", "status", "p1", nil)
	h.ops[inv].TraceID = "0af7651916cd43dd8448eb211c80319c"
	h.complete(inv, 2400, OpInfo, nil, "i/o timeout") // no answer: invalid
	h.fault(2500, 0, "crash", "p1", map[string]any{"pid": 101, "signal": "SIGKILL"})
	d := runData(h)
	d.Dir = t.TempDir()
	d.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d.TraceURL = "http://localhost:16686"
	d.Plan = []PlanEntry{
		{At: Duration(300 * time.Millisecond), Process: Nemesis, Kind: KindFault, F: "hang_queue", Target: 1, For: Duration(500 * time.Millisecond)},
		{At: Duration(2500 * time.Millisecond), Process: Nemesis, Kind: KindFault, F: "crash", Target: 1},
	}
	p1 := entry("p1", 101, protocol.StateRunning)
	d.Inspects = []InspectSample{inspectAt(50, []string{"p1"}, p1), inspectAt(1000, []string{"p1"}, p1), inspectAt(3000, nil)}
	d.Census = []CensusSample{
		{Time: ms(50), Phase: "chaos", Procs: []launchProc{proc(101, "S")}},
		{Time: ms(3000), Phase: "chaos"},
		{Time: ms(4000), Phase: PhaseFinal},
	}
	d.Shutdown = ShutdownRecord{Signal: "SIGTERM", Requested: ms(3500), Exited: ms(3700)}
	if withTraces {
		d.TracesFile = filepath.Join(d.Dir, "traces.json")
		writeTestTraces(t, d.TracesFile, "0af7651916cd43dd8448eb211c80319c")
	}
	return d
}

// writeTestTraces writes one trace in OTLP JSON lines: a client span, a
// manager span under it and a worker span with a fault event, one
// resource per line as the file exporter writes them.
func writeTestTraces(t *testing.T, path, traceID string) {
	t.Helper()
	line := func(service string, spans ...map[string]any) string {
		b, err := json.Marshal(map[string]any{"resourceSpans": []any{map[string]any{
			"resource":   map[string]any{"attributes": []any{map[string]any{"key": "service.name", "value": map[string]any{"stringValue": service}}}},
			"scopeSpans": []any{map[string]any{"spans": spans}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	base := int64(1_767_225_600_000_000_000)
	span := func(id, parent, name string, start, end int64) map[string]any {
		return map[string]any{"traceId": traceID, "spanId": id, "parentSpanId": parent, "name": name, "kind": 2,
			"startTimeUnixNano": json.Number(itoa(base + start)), // a number, as some exporters write it "endTimeUnixNano": itoa(base + end),
			"attributes":        []any{map[string]any{"key": "pipeline_id", "value": map[string]any{"stringValue": "p1"}}}}
	}
	worker := span("00f067aa0ba902b9", "00f067aa0ba902b8", "worker status", int64(100*time.Millisecond), int64(1900*time.Millisecond))
	worker["events"] = []any{map[string]any{"timeUnixNano": itoa(base + int64(150*time.Millisecond)), "name": "chaos.fault",
		"attributes": []any{map[string]any{"key": "fault", "value": map[string]any{"stringValue": "hang_queue"}}}}}
	manager := span("00f067aa0ba902b8", "00f067aa0ba902b7", "manager status", int64(50*time.Millisecond), int64(1950*time.Millisecond))
	manager["status"] = map[string]any{"code": "STATUS_CODE_ERROR", "message": "timeout"}
	text := strings.Join([]string{
		line("corral-harness", span("00f067aa0ba902b7", "", "client status", 0, int64(2*time.Second))),
		line("corral-manager", manager),
		line("corral-worker", worker),
		`{"resourceSpans": [torn`,
	}, "\n") + "\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestEvaluateSmallRun(t *testing.T) {
	d := smallRun(t, true)
	rep := Evaluate(d, DefaultCheckers(d.Scenario))
	if rep.Valid {
		t.Fatal("report is valid, want invalid (a request went unanswered)")
	}
	verdicts := map[string]string{}
	for _, r := range rep.Results {
		verdicts[r.Checker] = r.Verdict
	}
	want := map[string]string{
		CheckNoLeakedProcesses: Valid, CheckBoundedShutdown: Valid, CheckRequestsAnswered: Invalid,
		CheckResponsesMatch: Valid, CheckCrashDetected: Valid, CheckFaultCoverage: Valid, CheckSLOs: Valid,
		CheckConsistentHealth: Valid, CheckHangDetected: Valid,
	}
	for name, v := range want {
		if verdicts[name] != v {
			t.Errorf("%s = %s, want %s (%+v)", name, verdicts[name], v, rep.Results)
		}
	}
	if rep.Seed != 7 || rep.Scenario != "test" || rep.Replay == "" || rep.Dir != d.Dir {
		t.Errorf("header = seed %d scenario %q replay %q dir %q", rep.Seed, rep.Scenario, rep.Replay, rep.Dir)
	}
	if got := rep.Faults; got["hang_queue"] != 1 || got["crash"] != 1 || len(got) != 2 {
		t.Errorf("faults = %v, want hang_queue and crash once (heals are not faults)", got)
	}
	if got := rep.Latency["status"]; got.Count != 2 || got.Max < 1.9 {
		t.Errorf("status latency = %+v, want 2 samples up to 2s (info counts)", got)
	}
	if rep.Counts[OpInfo] != 1 || rep.Counts["checkers_invalid"] != 1 {
		t.Errorf("counts = %v", rep.Counts)
	}
}

func TestReportFiles(t *testing.T) {
	d := smallRun(t, true)
	rep := Evaluate(d, DefaultCheckers(d.Scenario))
	if err := WriteReports(rep); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(filepath.Join(d.Dir, ReportJSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Valid    *bool
		Seed     int64
		Scenario string
		Results  []Result
		Counts   map[string]int
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if got.Valid == nil || *got.Valid || got.Seed != 7 || got.Scenario != "test" || len(got.Results) != len(CheckerNames()) {
		t.Errorf("report.json = %s", b)
	}

	b, err = os.ReadFile(filepath.Join(d.Dir, ReportJUnitFile))
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("junit.xml is not well-formed: %v\n%s", err, b)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("junit.xml: %v", err)
		}
	}
	if len(suites.Suites) != 1 || suites.Suites[0].Name != "corral" || suites.Suites[0].Tests != len(CheckerNames()) || suites.Suites[0].Failures != 1 {
		t.Fatalf("junit.xml = %s", b)
	}
	for _, c := range suites.Suites[0].Cases {
		if (c.Failure != nil) != (c.Name == CheckRequestsAnswered) {
			t.Errorf("test case %s: failure = %v", c.Name, c.Failure)
		}
		if c.Failure != nil && !strings.Contains(c.Failure.Text, "no answer") {
			t.Errorf("failure text lacks the details: %q", c.Failure.Text)
		}
	}

	b, err = os.ReadFile(filepath.Join(d.Dir, ReportHTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range append(CheckerNames(),
		"<svg", `class="scatter"`, `class="timeline"`, `class="waterfall"`, `class="fault"`,
		"manager status (corral-manager)", "chaos.fault", "http://localhost:16686/trace/0af7651916cd43dd8448eb211c80319c",
		"corral run test --seed 7", "1 lines of", "st-running") {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "ZgotmplZ", "http://cdn", "https://"} {
		if strings.Contains(page, bad) {
			t.Errorf("report.html contains %q (it must be self-contained and well-escaped)", bad)
		}
	}
}

func TestReportHTMLWithoutTraces(t *testing.T) {
	d := smallRun(t, false)
	rep := Evaluate(d, DefaultCheckers(d.Scenario))
	if err := WriteReports(rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, ReportHTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Traces were not recorded") {
		t.Error("report.html does not say the traces are missing")
	}
	d.TracesFile = filepath.Join(d.Dir, "nope", "traces.json")
	b, err = reportHTML(Evaluate(d, DefaultCheckers(d.Scenario)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "traces.json is missing") {
		t.Error("report.html does not say traces.json is missing")
	}
}

func TestReportEmptyRun(t *testing.T) {
	d := &RunData{Dir: t.TempDir()}
	rep := Evaluate(d, DefaultCheckers(nil))
	if rep.Valid {
		t.Error("an empty run is valid; unknown verdicts must not pass")
	}
	if err := WriteReports(rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteReports(&Report{}); err == nil {
		t.Error("WriteReports without a folder succeeded")
	}
}

func TestPrintSummary(t *testing.T) {
	d := smallRun(t, false)
	d.Dir = "runs/2026-test-7"
	rep := Evaluate(d, DefaultCheckers(d.Scenario))
	var buf bytes.Buffer
	PrintSummary(&buf, rep)
	out := buf.String()
	for _, want := range []string{
		"corral run test  seed 7  INVALID",
		"requests_answered", "FAIL", "no_leaked_processes", "PASS",
		"op 10 (client-2 status p1 at 0.400s): no answer after 2s (i/o timeout)",
		"faults fired: crash x1, hang_queue x1",
		"status", "p99",
		"seed:   7",
		"replay: corral run test --seed 7",
		"run folder: runs/2026-test-7",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if want := len(CheckerNames()) - 1; strings.Count(out, "PASS") != want {
		t.Errorf("summary shows %d PASS, want %d:\n%s", strings.Count(out, "PASS"), want, out)
	}
}

func TestReportTraceIDs(t *testing.T) {
	for in, want := range map[string]string{
		"0AF7651916CD43DD8448EB211C80319C": "0af7651916cd43dd8448eb211c80319c",
		"CvdlGRbNQ92ESOshHIAxnA==":         "0af7651916cd43dd8448eb211c80319c",
		"":                                 "",
	} {
		if got := normID(in); got != want {
			t.Errorf("normID(%q) = %q, want %q", in, got, want)
		}
	}
}
