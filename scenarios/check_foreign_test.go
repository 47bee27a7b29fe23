package scenarios

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestBoundsPrecedence(t *testing.T) {
	cfg := manager.DefaultConfig()
	cfg.QueueTimeout = 2 * time.Second // as the manager: section set it
	cfg.TerminationGracePeriod = time.Second
	sc := &Scenario{
		Manager: map[string]string{"STREAM_MANAGER_QUEUE_TIMEOUT": "2", "STREAM_MANAGER_TERMINATION_GRACE_PERIOD": "1"},
		Bounds:  &BoundsSpec{Grace: Duration(7 * time.Second), CrashDetection: Duration(3 * time.Second)},
	}
	flag, err := ParseBounds("crash_detection=4s,max_health_failures=5,epsilon=0.25")
	if err != nil {
		t.Fatal(err)
	}
	b := resolveBounds(cfg, sc, flag, Profile{})
	want := map[string]BoundValue{
		"queue_timeout":       {"2s", BoundFromManager},
		"grace":               {"7s", BoundFromScenario},
		"crash_detection":     {"4s", BoundFromFlag},
		"max_health_failures": {"5", BoundFromFlag},
		"epsilon":             {"250ms", BoundFromFlag},
		"join":                {"30s", BoundFromDefault},
	}
	got := b.Declared()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %+v, want %+v", k, got[k], w)
		}
	}
	if b.crashBound() != 4*time.Second || b.Grace != 7*time.Second || b.MaxHealthFailures != 5 {
		t.Errorf("bounds not applied: %+v", b)
	}
	if s := flag.String(); s != "max_health_failures=5,crash_detection=4s,epsilon=250ms" {
		t.Errorf("String = %q", s)
	}
	for _, bad := range []string{"grace", "grace=-1s", "nope=1s", "max_health_failures=0", "join=soon"} {
		if _, err := ParseBounds(bad); err == nil || !strings.Contains(err.Error(), "--bounds") {
			t.Errorf("ParseBounds(%q) = %v, want an error naming --bounds", bad, err)
		}
	}
}

func TestScenarioInitAndBoundsSections(t *testing.T) {
	sc, err := Parse(strings.NewReader(`name: x
init:
  processing_configuration: {workspace_name: w, workflow_id: f}
bounds: {grace: 2s, crash_detection: 3s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Bounds == nil || sc.Bounds.Grace.D() != 2*time.Second || sc.Init["processing_configuration"] == nil {
		t.Fatalf("parsed %+v", sc)
	}
	if _, err := Parse(strings.NewReader("name: x\nbounds: {grase: 2s}\n")); err == nil {
		t.Error("an unknown bounds key was accepted")
	}
	bad := &Scenario{Name: "x", Bounds: &BoundsSpec{Join: Duration(-time.Second)}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "bounds.join") {
		t.Errorf("Validate = %v, want an error naming bounds.join", err)
	}
}

// A planned fault the profile cannot inject and a fault whose pipeline the
// manager had already removed are not applicable: listed, not "never
// fired", and the run stays valid; junit lists them as skipped.
func TestNotApplicableAccounting(t *testing.T) {
	var h hist
	inv := h.invoke(2000, Nemesis, protocol.FaultCrash, "", map[string]any{PlannedAtKey: "2s"})
	h.complete(inv, 2001, OpFail, map[string]any{NotApplicableKey: "pipeline #1's id p1 had left the manager's table"}, "not applicable: ...")
	h.call(3000, 1, Nemesis, protocol.FaultMalformedFrame, "", OpOK, nil, "")
	h.call(3002, 1, Nemesis, healPrefix+protocol.FaultMalformedFrame, "", OpOK, map[string]any{"done": true, "invalid_payload": true}, "")
	d := runData(&h)
	d.Plan = []PlanEntry{
		{At: Duration(time.Second), Kind: KindFault, F: protocol.FaultHangQueue, Target: 1, NotApplicable: "needs Corral's chaos command"},
		{At: Duration(2 * time.Second), Kind: KindFault, F: protocol.FaultCrash, Target: 1},
		{At: Duration(3 * time.Second), Kind: KindFault, F: protocol.FaultMalformedFrame},
	}
	r := checkFaultCoverage(d)
	if r.Verdict != Valid || !strings.Contains(r.Summary, "2 not applicable") {
		t.Fatalf("fault_coverage = %s: %s\n%s", r.Verdict, r.Summary, strings.Join(r.Details, "\n"))
	}
	rep := Evaluate(d, []Checker{checkerFunc{CheckFaultCoverage, checkFaultCoverage}})
	if len(rep.NotApplicable) != 2 || rep.NotApplicable[1].At.D() != 2*time.Second {
		t.Fatalf("NotApplicable = %+v", rep.NotApplicable)
	}
	x, err := reportJUnit(rep)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(x, []byte("<skipped ")); n != 2 || !bytes.Contains(x, []byte(`skipped="2"`)) {
		t.Errorf("junit has %d skipped cases:\n%s", n, x)
	}
	h5, err := reportHTML(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(h5, []byte("needs Corral&#39;s chaos command")) || !bytes.Contains(h5, []byte("not applicable")) {
		t.Errorf("report.html does not list the not-applicable faults")
	}

	// Every applicable fault finding its pipeline gone proves nothing.
	var h2 hist
	inv = h2.invoke(2000, Nemesis, protocol.FaultCrash, "", map[string]any{PlannedAtKey: "2s"})
	h2.complete(inv, 2001, OpFail, map[string]any{NotApplicableKey: "gone"}, "not applicable: gone")
	d2 := runData(&h2)
	d2.Plan = d.Plan[1:2]
	if r := checkFaultCoverage(d2); r.Verdict != Unknown {
		t.Errorf("all faults inapplicable at run time: %s (%s), want unknown", r.Verdict, r.Summary)
	}
}

// The run has one verdict: the summary header, report.json, junit.xml
// and the RESULT line (cmd) all print Report.Verdict.
func TestOneVerdict(t *testing.T) {
	for _, tc := range []struct {
		verdicts []string
		want     string
	}{
		{[]string{Valid, Valid}, VerdictValid},
		{[]string{Valid, Unknown}, VerdictUnknown},
		{[]string{Unknown, Invalid, Valid}, VerdictInvalid},
		{[]string{Invalid, Unknown}, VerdictInvalid},
	} {
		var checkers []Checker
		for i, v := range tc.verdicts {
			checkers = append(checkers, checkerFunc{string(rune('a' + i)), func(*RunData) Result { return Result{Verdict: v, Summary: v} }})
		}
		rep := Evaluate(runData(nil), checkers)
		if rep.Verdict != tc.want || rep.Valid != (tc.want == VerdictValid) {
			t.Fatalf("%v: verdict %s valid %v, want %s", tc.verdicts, rep.Verdict, rep.Valid, tc.want)
		}
		var sum bytes.Buffer
		PrintSummary(&sum, rep)
		if first, _, _ := strings.Cut(sum.String(), "\n"); !strings.HasSuffix(first, " "+tc.want) {
			t.Errorf("%v: header %q, want %s", tc.verdicts, first, tc.want)
		}
		j, _ := reportJSON(rep)
		var parsed struct{ Verdict string }
		if json.Unmarshal(j, &parsed); parsed.Verdict != tc.want {
			t.Errorf("%v: report.json verdict %q", tc.verdicts, parsed.Verdict)
		}
		x, _ := reportJUnit(rep)
		if !bytes.Contains(x, []byte(`name="verdict" value="`+tc.want+`"`)) {
			t.Errorf("%v: junit lacks verdict %s", tc.verdicts, tc.want)
		}
	}
}

func pollAt(at int, listed []string, status ...StatusPoll) PollSample {
	return PollSample{Time: ms(at), Listed: listed, Status: status}
}

func running(id string) StatusPoll {
	return StatusPoll{PipelineID: id, Answered: true, OK: true, States: []string{"RUNNING"}}
}

// Without inspect, crash and hang detection are judged from list and
// status polls, and say so.
func TestPollBasedDetection(t *testing.T) {
	crash := func(polls ...PollSample) func() *RunData {
		return func() *RunData {
			var h hist
			h.fault(1000, 0, protocol.FaultCrash, "p1", map[string]any{"pid": 4242})
			d := runData(&h)
			d.Polls = polls
			return d
		}
	}
	runCheckCases(t, checkCrashDetected, []checkCase{
		{"left the list", crash(pollAt(500, []string{"p1"}, running("p1")), pollAt(1500, nil, running("p1")), pollAt(1800, []string{})),
			Valid, "observables: list_pipelines and status, polled and as the workload saw them"},
		{"status reports failure", crash(pollAt(1500, []string{"p1"}, StatusPoll{PipelineID: "p1", Answered: true, OK: true, States: []string{"ERROR"}})),
			Valid, "all 1 crashes detected"},
		{"still listed and running", crash(pollAt(1500, []string{"p1"}, running("p1")), pollAt(3000, []string{"p1"}, running("p1"))),
			Invalid, "still listed with a healthy status"},
		{"a client's not_found decides", func() *RunData {
			d := crash(pollAt(1500, nil, StatusPoll{PipelineID: "p1"}))()
			var h hist
			h.ops = d.Ops
			h.call(1600, 5, "client-1", "status", "p1", OpFail, nil, "not_found: Could not find InferencePipeline with id=p1.")
			d.Ops = h.ops
			return d
		}, Valid, "all 1 crashes detected"},
		{"unanswered polls decide nothing", crash(pollAt(1500, nil, StatusPoll{PipelineID: "p1"}), pollAt(3000, nil, StatusPoll{PipelineID: "p1"})),
			Unknown, "no sample of the manager's view"},
	})
	hang := func(polls ...PollSample) func() *RunData {
		return func() *RunData {
			var h hist
			h.fault(1000, 9000, protocol.FaultHangProcess, "p1", map[string]any{"pid": 4242})
			d := runData(&h)
			d.Polls = polls
			return d
		}
	}
	runCheckCases(t, checkHangDetected, []checkCase{
		{"removed in time", hang(pollAt(2000, []string{"p1"}, StatusPoll{PipelineID: "p1"}), pollAt(2400, []string{})), Valid, "all 1 hangs detected"},
		// A status that never comes back is no detection.
		{"never detected", hang(pollAt(2000, []string{"p1"}, StatusPoll{PipelineID: "p1"}), pollAt(4000, []string{"p1"}, StatusPoll{PipelineID: "p1"})),
			Invalid, "not marked for removal"},
	})
	consistent := func(polls ...PollSample) func() *RunData {
		return func() *RunData {
			var h hist
			h.call(1000, 10, "client-1", "terminate", "p2", OpOK, map[string]any{}, "")
			d := runData(&h)
			d.Polls = polls
			return d
		}
	}
	notFound := StatusPoll{PipelineID: "p1", Answered: true, ErrorType: "not_found"}
	runCheckCases(t, checkConsistentHealth, []checkCase{
		{"agree", consistent(pollAt(500, []string{"p1", "p2"}, running("p1")), pollAt(1500, []string{"p1"}, running("p1"))),
			Valid, "agree in 2 polls"},
		{"listed but not found", consistent(pollAt(500, []string{"p1"}, notFound), pollAt(900, []string{"p1"}, notFound)),
			Invalid, "its status answers not_found"},
		{"terminated but listed", consistent(pollAt(3000, []string{"p2"})), Invalid, "still listed"},
		{"nothing sampled", func() *RunData { return runData(nil) }, Unknown, "no list/status polls"},
	})
}

// A serial target's request may wait for every request in flight when it
// was sent, plus one sampler request; a concurrent one's may not.
func TestSerialRequestBounds(t *testing.T) {
	var h hist
	a := h.invoke(0, "client-1", "status", "p1", nil)
	b := h.invoke(100, "client-2", "status", "p1", nil)
	h.complete(a, 2000, OpOK, map[string]any{}, "")
	h.complete(b, 3400, OpOK, map[string]any{}, "") // 3.3 s: behind a and a sampler request
	d := runData(&h)
	if r := checkRequestsAnswered(d); r.Verdict != Invalid {
		t.Fatalf("concurrent target: %s (%s), want invalid", r.Verdict, r.Summary)
	}
	d.Profile.Serial = true
	bound := requestBounder(d, newOpView(d.Ops))(&d.Ops[b])
	if want := 2*RequestBound("status", testBounds) + testBounds.QueueTimeout; bound != want {
		t.Fatalf("serial bound = %v, want %v", bound, want)
	}
	if r := checkRequestsAnswered(d); r.Verdict != Valid {
		t.Fatalf("serial target: %s (%s), want valid", r.Verdict, r.Summary)
	}
}

// frozenServer accepts connections and never answers, as a serial server
// stuck on a stopped worker does; it holds them until the test ends.
func frozenServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	return ln.Addr().String()
}

// Against a frozen target the nemesis keeps to its schedule: each
// injection runs on its own with its own deadline, so three faults
// planned 100 ms apart leave on time although none is ever answered, and
// each is recorded as missed (info), not as failed or fired.
func TestNemesisKeepsScheduleAgainstFrozenTarget(t *testing.T) {
	addr := frozenServer(t)
	p, _ := ProfileByName(ProfileCorral)
	r := &runner{start: time.Now(), tl: Timeline{Heal: 600 * time.Millisecond}, ids: newPipelines(), workers: newWorkerMap(),
		tr: &runTracing{tracer: tracenoop().Tracer("test")}, profile: p,
		tgt:         &target{addr: addr, exited: make(chan struct{})},
		faultClient: &protocol.Client{Addr: addr, Timeout: 300 * time.Millisecond}}
	r.hist = NewHistory(r.start, nil)
	r.ids.set(1, "p1")
	var plan []PlanEntry
	for i := range 3 {
		plan = append(plan, PlanEntry{At: Duration(time.Duration(i+1) * 100 * time.Millisecond), Process: Nemesis, Kind: KindFault,
			F: protocol.FaultSlowProbe, Target: 1, For: Duration(time.Second), Params: map[string]any{"delay_seconds": 0.1}})
	}
	r.runNemesis(t.Context(), plan)
	ops := r.hist.Ops()
	v := newOpView(ops)
	n := 0
	for i := range ops {
		inv := &ops[i]
		if inv.Type != OpInvoke || inv.F != protocol.FaultSlowProbe {
			continue
		}
		planned := plan[n].At.D()
		n++
		if late := time.Duration(inv.Time) - planned; late > lateSlack/2 {
			t.Errorf("fault planned at %v left %v late", planned, late)
		}
		if c := v.completion(inv); c == nil || c.Type != OpInfo || !strings.Contains(c.Error, "missed") {
			t.Errorf("fault planned at %v completed %+v, want info (missed)", planned, c)
		}
	}
	if n != 3 {
		t.Fatalf("%d injections recorded, want 3", n)
	}
}

// A SIGTERM that never reached the manager leaves the shutdown checkers
// unknown (not "never exited"); an exit status the harness cannot see is
// never reported as "exited 0".
func TestShutdownNotDeliveredOrUnseen(t *testing.T) {
	withShutdown := func(sd ShutdownRecord) func() *RunData {
		return func() *RunData {
			d := runData(nil)
			d.Shutdown = sd
			d.Census = []CensusSample{{Time: ms(9000), Phase: PhaseFinal, Procs: []launchProc{proc(77, "S")}}}
			return d
		}
	}
	notDelivered := withShutdown(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), NotDelivered: "kill 4242: operation not permitted"})
	runCheckCases(t, checkBoundedShutdown, []checkCase{
		{"not delivered", notDelivered, Unknown, "was not delivered"},
		{"exit unseen", func() *RunData {
			d := withShutdown(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(1500), ExitCode: -1, ExitUnknown: true})()
			d.Census = nil
			return d
		}, Valid, "exit status unknown"},
	})
	runCheckCases(t, checkNoLeakedProcesses, []checkCase{{"not delivered", notDelivered, Unknown, "was not delivered"}})
	d := withShutdown(ShutdownRecord{Signal: "SIGTERM", Requested: ms(1000), Exited: ms(1500), ExitCode: -1, ExitUnknown: true})()
	d.Census = nil
	if r := checkBoundedShutdown(d); strings.Contains(r.Summary, "exited 0") {
		t.Errorf("unseen exit reported as %q", r.Summary)
	}
}
