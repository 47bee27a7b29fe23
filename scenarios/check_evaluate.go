package scenarios

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/corral-dev/corral/chaos"
)

// Checker names, as scenario files spell them under invariants.
const (
	CheckNoLeakedProcesses = "no_leaked_processes"
	CheckBoundedShutdown   = "bounded_shutdown"
	CheckRequestsAnswered  = "requests_answered"
	CheckResponsesMatch    = "responses_match"
	CheckConsistentHealth  = "consistent_health"
	CheckCrashDetected     = "crash_detected"
	CheckHangDetected      = "hang_detected"
	CheckFaultCoverage     = "fault_coverage"
	CheckSLOs              = "slos"
	CheckLimits            = "limits"
	CheckChurn             = "churn_leaves_nothing"
)

// CrashDetectionBound is how soon after a worker's death the manager must
// have dropped it from its table: crashes are learned from process exit,
// not from polling (Bounds.Epsilon is added on top).
const CrashDetectionBound = time.Second

// checkerFunc is a Checker made of a name and a function.
type checkerFunc struct {
	name  string
	check func(d *RunData) Result
}

func (c checkerFunc) Name() string { return c.name }

func (c checkerFunc) Check(d *RunData) Result {
	r := c.check(d)
	r.Checker = c.name
	return r
}

// allCheckers lists every checker in report order.
func allCheckers() []Checker {
	return []Checker{
		checkerFunc{CheckNoLeakedProcesses, checkNoLeakedProcesses},
		checkerFunc{CheckBoundedShutdown, checkBoundedShutdown},
		checkerFunc{CheckRequestsAnswered, checkRequestsAnswered},
		checkerFunc{CheckResponsesMatch, checkResponsesMatch},
		checkerFunc{CheckConsistentHealth, checkConsistentHealth},
		checkerFunc{CheckCrashDetected, checkCrashDetected},
		checkerFunc{CheckHangDetected, checkHangDetected},
		checkerFunc{CheckFaultCoverage, checkFaultCoverage},
		checkerFunc{CheckSLOs, checkSLOs},
		checkerFunc{CheckLimits, checkLimits},
		checkerFunc{CheckChurn, checkChurnLeavesNothing},
		checkerFunc{CheckPipelineModel, checkPipelineModel},
		checkerFunc{CheckCensusTruth, checkCensusTruth},
		checkerFunc{CheckAvailability, checkAvailability},
	}
}

// CheckerNames lists the names DefaultCheckers knows, in report order.
func CheckerNames() []string {
	var out []string
	for _, c := range allCheckers() {
		out = append(out, c.Name())
	}
	return out
}

// DefaultCheckers returns every checker, or only those named in
// sc.Invariants (in report order). A name no checker has gives a checker
// whose verdict is unknown, so a typo is never a silent pass.
func DefaultCheckers(sc *Scenario) []Checker {
	all := allCheckers()
	if sc == nil || len(sc.Invariants) == 0 {
		return all
	}
	var out []Checker
	for _, c := range all {
		if slices.Contains(sc.Invariants, c.Name()) {
			out = append(out, c)
		}
	}
	for _, name := range sc.Invariants {
		if !slices.Contains(CheckerNames(), name) {
			out = append(out, checkerFunc{name, func(*RunData) Result {
				return Result{Verdict: Unknown, Summary: fmt.Sprintf("no checker is named %q (known: %s)",
					name, strings.Join(CheckerNames(), ", "))}
			}})
		}
	}
	return out
}

// Evaluate runs the checkers over d and summarises the run. The report is
// valid only when every result is valid: unknown is never a pass.
func Evaluate(d *RunData, checkers []Checker) *Report {
	rep := &Report{
		Valid:   true,
		Seed:    d.Seed,
		Replay:  d.Replay,
		Dir:     d.Dir,
		Data:    d,
		Counts:  map[string]int{},
		Latency: map[string]Percentiles{},
		Faults:  map[string]int{},
	}
	if d.Scenario != nil {
		rep.Scenario = d.Scenario.Name
	}
	for _, c := range checkers {
		r := c.Check(d)
		if r.Checker == "" {
			r.Checker = c.Name()
		}
		if r.Verdict != Valid && r.Verdict != Invalid {
			r.Verdict = Unknown
		}
		if r.Verdict != Valid {
			rep.Valid = false
		}
		rep.Counts["checkers_"+r.Verdict]++
		rep.Results = append(rep.Results, r)
	}
	for _, o := range d.Ops {
		rep.Counts[o.Type]++
		if o.Process == Nemesis && o.Type == OpOK && !strings.HasPrefix(o.F, healPrefix) {
			rep.Faults[o.F]++
			rep.Counts["faults_fired"]++
		}
	}
	for cmd, lat := range commandLatencies(d) {
		rep.Latency[cmd] = percentilesOf(lat)
	}
	rep.Verdict = runVerdict(rep.Results)
	rep.NotApplicable = notApplicableFaults(d)
	rep.Counts["faults_not_applicable"] = len(rep.NotApplicable)
	rep.Target = TargetInfo{Embedded: d.Embedded, Profile: d.Profile, Bounds: d.Bounds.Declared(), Addr: d.TargetAddr, Pid: d.TargetPid}
	return rep
}

// Run verdicts (Report.Verdict), as the summary header, the RESULT line,
// report.json and junit.xml print them.
const (
	VerdictValid   = "VALID"
	VerdictInvalid = "INVALID"
	VerdictUnknown = "UNKNOWN"
)

// runVerdict is the run's one verdict: INVALID if any checker is
// invalid, else UNKNOWN if any is unknown (never a pass), else VALID.
func runVerdict(results []Result) string {
	v := VerdictValid
	for _, r := range results {
		switch r.Verdict {
		case Invalid:
			return VerdictInvalid
		case Valid:
		default:
			v = VerdictUnknown
		}
	}
	return v
}

// healPrefix starts the name of a heal op of the nemesis ("heal:crash").
const healPrefix = "heal:"

// isClient reports whether a history process is a workload client.
func isClientProcess(p string) bool { return strings.HasPrefix(p, "client") }

// opView indexes a history for the checkers.
type opView struct {
	ops    []Op
	byIdx  map[int]*Op   // by Op.Index
	compls map[int][]*Op // completions by invoke index
}

func newOpView(ops []Op) *opView {
	v := &opView{ops: ops, byIdx: map[int]*Op{}, compls: map[int][]*Op{}}
	for i := range ops {
		o := &ops[i]
		v.byIdx[o.Index] = o
		if o.Type != OpInvoke {
			v.compls[o.Invoke] = append(v.compls[o.Invoke], o)
		}
	}
	return v
}

// completion returns the first completion of inv, or nil.
func (v *opView) completion(inv *Op) *Op {
	if c := v.compls[inv.Index]; len(c) > 0 {
		return c[0]
	}
	return nil
}

// latencySample is one completed client command.
type latencySample struct {
	At      int64 // invoke time, ns since start
	Latency time.Duration
	Type    string // ok, fail or info
	Op      *Op    // the completion
	Inv     *Op    // its invoke
}

// commandLatencies gathers client command durations (ok, fail and info)
// by command.
func commandLatencies(d *RunData) map[string][]latencySample {
	v := newOpView(d.Ops)
	out := map[string][]latencySample{}
	for i := range d.Ops {
		c := &d.Ops[i]
		if c.Type == OpInvoke || !isClientProcess(c.Process) {
			continue
		}
		inv, ok := v.byIdx[c.Invoke]
		if !ok {
			continue
		}
		out[c.F] = append(out[c.F], latencySample{At: inv.Time, Latency: c.Duration(*inv), Type: c.Type, Op: c, Inv: inv})
	}
	return out
}

func sortedDurations(s []latencySample) []time.Duration {
	ds := make([]time.Duration, len(s))
	for i, x := range s {
		ds[i] = x.Latency
	}
	slices.Sort(ds)
	return ds
}

// quantile is the nearest-rank q-quantile (0 < q <= 1) of sorted ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	k := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(k, len(ds)-1))]
}

func percentilesOf(s []latencySample) Percentiles {
	ds := sortedDurations(s)
	if len(ds) == 0 {
		return Percentiles{}
	}
	return Percentiles{
		Count: len(ds),
		P50:   quantile(ds, 0.50).Seconds(),
		P90:   quantile(ds, 0.90).Seconds(),
		P99:   quantile(ds, 0.99).Seconds(),
		Max:   ds[len(ds)-1].Seconds(),
	}
}

// valueFields returns an op value as a JSON object, whatever Go type the
// runner stored (a map, a struct, raw JSON); nil when it is not an object.
func valueFields(v any) map[string]any {
	switch x := v.(type) {
	case nil:
		return nil
	case map[string]any:
		return x
	case json.RawMessage:
		var m map[string]any
		if json.Unmarshal(x, &m) == nil {
			return m
		}
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// numberField reads a numeric field of an op value.
func numberField(m map[string]any, key string) (float64, bool) {
	switch x := m[key].(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// paramField looks for key in an op value and in its "params" object.
func paramField(m map[string]any, key string) (float64, bool) {
	if f, ok := numberField(m, key); ok {
		return f, true
	}
	if p, ok := m["params"].(map[string]any); ok {
		return numberField(p, key)
	}
	return 0, false
}

// secs formats ns-since-start as seconds for details.
func secs(ns int64) string { return fmt.Sprintf("%.3fs", time.Duration(ns).Seconds()) }

// describeOp names an op in a detail line: index, process, command,
// pipeline and time.
func describeOp(o *Op) string {
	s := fmt.Sprintf("op %d (%s %s", o.Index, o.Process, o.F)
	if o.PipelineID != "" {
		s += " " + o.PipelineID
	} else if o.Pipeline != 0 {
		s += fmt.Sprintf(" pipeline #%d", o.Pipeline)
	}
	return s + " at " + secs(o.Time) + ")"
}

// faultWindow is one injected fault of the nemesis: from its ok op to its
// heal (End is -1 when it was never healed).
type faultWindow struct {
	F string
	// Fault is F's catalogue entry; nil when F is not in the catalogue
	// (renamed, or from another harness): checkers that depend on a
	// fault's effect then say unknown.
	Fault      chaos.Fault
	PipelineID string
	Invoke     *Op // the nemesis invoke
	OK         *Op // its ok completion (nil if it did not fire)
	Start, End int64
	Healed     bool
	Observed   map[string]any
	// HealObserved is the observation its heal op recorded, nil if none.
	// For faults that work in the background (client faults) only this
	// one is complete.
	HealObserved map[string]any
}

// nemesisFaults pairs every fired fault with its heal.
func nemesisFaults(d *RunData) []faultWindow {
	v := newOpView(d.Ops)
	var out []faultWindow
	used := map[int]bool{}
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Process != Nemesis || inv.Type != OpInvoke || strings.HasPrefix(inv.F, healPrefix) {
			continue
		}
		w := faultWindow{F: inv.F, PipelineID: inv.PipelineID, Invoke: inv, Start: inv.Time, End: -1}
		if f, ok := chaos.Lookup(inv.F); ok {
			w.Fault = f
		}
		if c := v.completion(inv); c != nil && c.Type == OpOK {
			w.OK = c
			w.Start = c.Time
			w.Observed = valueFields(c.Value)
			if c.PipelineID != "" {
				w.PipelineID = c.PipelineID
			}
		}
		// The heal is the next heal:<F> op on the same pipeline.
		for j := i + 1; j < len(d.Ops); j++ {
			h := &d.Ops[j]
			if h.Process != Nemesis || h.F != healPrefix+inv.F || used[h.Index] {
				continue
			}
			if h.PipelineID != "" && w.PipelineID != "" && h.PipelineID != w.PipelineID {
				continue
			}
			if h.Type == OpInvoke {
				if c := v.completion(h); c != nil {
					used[h.Index] = true
					w.End, w.Healed = c.Time, true
					if c.Type == OpOK {
						w.HealObserved = valueFields(c.Value)
					}
					break
				}
				continue
			}
			if _, paired := v.byIdx[h.Invoke]; !paired { // a heal recorded without its invoke
				used[h.Index] = true
				w.End, w.Healed = h.Time, true
				break
			}
		}
		out = append(out, w)
	}
	return out
}

// runEnd is the last time the run observed anything.
func runEnd(d *RunData) int64 {
	var end int64
	for _, o := range d.Ops {
		end = max(end, o.Time)
	}
	for _, s := range d.Census {
		end = max(end, s.Time)
	}
	for _, s := range d.Inspects {
		end = max(end, s.Time)
	}
	return max(end, d.Shutdown.Exited)
}

// detailCap bounds the detail lines of one result; the summary keeps the
// total.
const detailCap = 200

func capDetails(ds []string) []string {
	if len(ds) <= detailCap {
		return ds
	}
	return append(ds[:detailCap:detailCap], fmt.Sprintf("... and %d more", len(ds)-detailCap))
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
