package scenarios

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/corral-dev/corral/chaos"
)

// CheckPipelineModel names the checker that holds every answer against a
// model of each pipeline (check_model.go, check_model_state.go).
const CheckPipelineModel = "pipeline_model"

// judgeLife checks one pipeline's existence: no proof of life after a
// proof of absence, and no absence without a cause.
func (f *facts) judgeLife(l *life) []string {
	var last, first *evidence // the latest proof of life, the earliest of absence
	for i := range l.Present {
		if e := &l.Present[i]; last == nil || e.At > last.At {
			last = e
		}
	}
	for i := range l.Gone {
		if e := &l.Gone[i]; first == nil || e.At < first.At {
			first = e
		}
	}
	if first == nil || (l.InitOK == nil && l.FailedInit == nil) {
		return nil // ids no init named are judged by judgeUnknownIDs
	}
	name := "pipeline " + l.ID
	if last != nil && last.At >= first.At {
		// The first proof of life after the first proof of absence is
		// the witness.
		var e evidence
		for _, e = range sortedEvidence(l.Present) {
			if e.At >= first.At {
				break
			}
		}
		if l.FailedInit != nil && first.Op == l.FailedInit {
			return []string{fmt.Sprintf("%s: phantom pipeline: its init failed (op %d, %s) but %s (op %s, sent at %s)",
				name, l.FailedInit.Index, errorTypeOr(l.FailedInit), e.What, opIndex(e.Op), secs(e.At))}
		}
		return []string{fmt.Sprintf("%s: %s (op %s, by %s) but later %s (op %s, sent at %s)",
			name, first.What, opIndex(first.Op), secs(first.At), e.What, opIndex(e.Op), secs(e.At))}
	}
	lo := int64(math.MinInt64)
	if last != nil {
		lo = last.At
	}
	for _, w := range f.causesOf(l) {
		if w.From < first.At && w.To > lo {
			return nil
		}
	}
	seen := "never seen alive"
	if last != nil {
		seen = fmt.Sprintf("last seen alive at %s (%s, op %s)", secs(last.At), last.What, opIndex(last.Op))
	}
	return []string{fmt.Sprintf("%s: %s (op %s, by %s) but nothing could have removed it: %s, and no terminate, fault, shutdown, worker exit or failed command came before",
		name, first.What, opIndex(first.Op), secs(first.At), seen)}
}

func sortedEvidence(es []evidence) []evidence {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b evidence) int { return cmp.Compare(a.At, b.At) })
	return out
}

func opIndex(o *Op) string {
	if o == nil {
		return "-"
	}
	return fmt.Sprint(o.Index)
}

// judgeUnknownIDs flags ids that lists show or that answered ok although no
// init ever named them, beyond the inits whose answer was lost (each may
// have made one such pipeline). Ids seen before the run's first init
// belong to someone else.
func (f *facts) judgeUnknownIDs() []string {
	unknown := map[string]string{} // id -> first witness
	var order []string
	foreign := map[string]bool{}
	for _, lst := range f.lists {
		if f.firstInit < 0 || lst.Lo < f.firstInit {
			for id := range lst.IDs {
				foreign[id] = true
			}
		}
	}
	// Pipelines the nemesis made (an init storm names them) are not the
	// model's; a request of a client fault that got no answer may have
	// made one nobody names.
	allowed := len(f.unknownInits)
	for _, w := range nemesisFaults(f.d) {
		for _, obs := range []map[string]any{w.Observed, w.HealObserved} {
			for id := range stringSet(obs["pipelines"]) {
				foreign[id] = true
			}
		}
		if w.Fault != nil && w.Fault.Level() == chaos.LevelClient {
			n, _ := numberField(w.HealObserved, "unanswered")
			allowed += int(n)
		}
	}
	note := func(id string, at int64, what string) {
		if l, ok := f.lives[id]; ok && (l.InitOK != nil || l.FailedInit != nil) {
			return
		}
		if foreign[id] || f.firstInit < 0 || at < f.firstInit {
			return
		}
		if _, ok := unknown[id]; !ok {
			unknown[id] = what
			order = append(order, id)
		}
	}
	for _, lst := range f.lists {
		for _, id := range slices.Sorted(maps.Keys(lst.IDs)) {
			note(id, lst.Hi, "listed by "+lst.describe())
		}
	}
	for _, id := range f.ids {
		for _, e := range f.lives[id].Present {
			note(id, e.At, fmt.Sprintf("%s (op %s)", e.What, opIndex(e.Op)))
		}
	}
	if len(unknown) <= allowed {
		return nil
	}
	var out []string
	for _, id := range order {
		out = append(out, fmt.Sprintf("pipeline %s was never created by an init: %s (%d inits had an unknown outcome)",
			id, unknown[id], allowed))
	}
	return out
}

// checkPipelineModel: every answer agrees with a model of each pipeline.
// A pipeline exists from its init's answer until it leaves the table, and
// it may leave only in a window some cause opens (terminate, a fault on
// it, the manager's shutdown, its worker's exit, a failure the manager
// answered, a health failure inspect showed). Against that lifecycle: no
// pipeline answers or is listed after it was shown gone (terminate ok,
// not_found, a list without it, a failed init); none is gone outside every
// cause window; lists name no id that no init created. Against the
// mute/resume state machine (check_model_state.go): status reports and
// consume_result answers.
func checkPipelineModel(d *RunData) Result {
	f := gatherFacts(d)
	var details []string
	for _, id := range f.ids {
		details = append(details, f.judgeLife(f.lives[id])...)
	}
	details = append(details, f.judgeUnknownIDs()...)
	states, consumes := f.judgeStates()
	details = append(details, states...)
	details = append(details, consumes...)
	judged := 0
	for _, id := range f.ids {
		if f.lives[id].InitOK != nil || f.lives[id].FailedInit != nil {
			judged++
		}
	}
	if len(details) > 0 {
		return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d answers contradict the pipeline model", len(details)),
			Details: capDetails(append(details, f.unknownFaults...))}
	}
	if len(f.unknownFaults) > 0 {
		return Result{Verdict: Unknown, Summary: f.unknownFaults[0], Details: capDetails(f.unknownFaults)}
	}
	return Result{Verdict: Valid, Summary: fmt.Sprintf("%d pipelines: every answer and list agrees with the model", judged)}
}
