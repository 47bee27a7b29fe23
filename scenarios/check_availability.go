package scenarios

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

// CheckAvailability names the checker of the availability objective and
// of the answers owed to misbehaving clients.
const CheckAvailability = "availability"

// DefaultAvailability is the fraction of commands to untouched pipelines
// that must succeed when a scenario does not set availability.
const DefaultAvailability = 0.99

// externalCause reports whether a cause window comes from outside the
// manager (a fault, a terminate, the shutdown, a worker's own exit, a
// failed init): the manager's own failures never excuse unavailability.
func externalCause(w window) bool { return w.Kind != causeManager }

// available reports whether command inv (answered by c, nil if never) is
// one availability judges, and why not: the pipeline was created by an ok
// init before, and nothing outside the manager (a fault until its
// recovery bound, a terminate, the shutdown, its worker's exit) touched it
// during the command or may have removed it before.
func (f *facts) available(inv, c *Op) (bool, string) {
	l := f.lives[inv.PipelineID]
	if l == nil || l.InitOK == nil || l.InitOK.Time > inv.Time {
		return false, "no pipeline"
	}
	end := runEnd(f.d)
	if c != nil {
		end = c.Time
	}
	// The latest proof the pipeline existed: it cannot have gone before.
	lastSeen := int64(-1)
	for _, e := range l.Present {
		lastSeen = max(lastSeen, e.At)
	}
	for _, w := range f.causesOf(l) {
		if !externalCause(w) || w.From > end {
			continue
		}
		if w.To >= inv.Time {
			return false, w.Why // active during the command
		}
		if w.To > lastSeen {
			return false, w.Why + " (the pipeline may have gone since)"
		}
	}
	return true, ""
}

// checkAvailability: commands to pipelines no fault touches succeed at
// the scenario's objective (Scenario.Availability, default 99 %), and
// every misbehaving client (the chaos catalogue's client faults) that sent
// a complete request got an answer.
func checkAvailability(d *RunData) Result {
	slo := DefaultAvailability
	if d.Scenario != nil && d.Scenario.Availability > 0 {
		slo = d.Scenario.Availability
	}
	f := gatherFacts(d)
	f.judgeStates() // which refusals of mute and resume the protocol allows
	// Faults that hold connections open by design (and leave the manager
	// to find them gone) may fill its connection cap for every pipeline:
	// refusals then are honest, and the limits checker judges them.
	var holds []window
	for _, w := range nemesisFaults(d) {
		if w.Fault != nil && w.Fault.AbandonsConnections() {
			holds = append(holds, window{w.Invoke.Time, addTo(faultEnd(w), removalBound(d.Bounds)), "fault " + w.F, w.Invoke, causeFault})
		}
	}
	held := func(from, to int64) bool {
		for _, w := range holds {
			if w.From <= to && w.To >= from {
				return true
			}
		}
		return false
	}
	end := runEnd(d)
	var failed []string
	total, ok := 0, 0
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !isClientProcess(inv.Process) || !slices.Contains(pipelineCommands, inv.F) {
			continue
		}
		c := f.v.completion(inv)
		if judged, _ := f.available(inv, c); !judged || f.refusable[inv.Index] {
			continue
		}
		if held(inv.Time, cmp.Or(completionTime(c), end)) {
			continue
		}
		total++
		// A mute or resume refused by upstream's state rule (the
		// workload cannot know the state its command meets) is a
		// correct answer.
		if c != nil && (c.Type == OpOK || c.Type == OpFail && protocol.IsNotAllowedText(c.Error)) {
			ok++
			continue
		}
		why := "never answered"
		if c != nil {
			why = fmt.Sprintf("%s by op %d: %s", c.Type, c.Index, c.Error)
		}
		failed = append(failed, fmt.Sprintf("%s: %s", describeOp(inv), why))
	}
	clients, clientsUnknown := clientAnswers(d)
	clientsUnknown = append(clientsUnknown, f.unknownFaults...)
	var details []string
	verdict := Valid
	summary := ""
	switch {
	case total == 0:
		summary = "no command reached a pipeline that no fault touched"
	default:
		got := float64(ok) / float64(total)
		summary = fmt.Sprintf("%.2f%% of %d commands to untouched pipelines succeeded (objective %.2f%%)", 100*got, total, 100*slo)
		if got < slo {
			verdict = Invalid
			details = append(details, failed...)
		}
	}
	if len(clients) > 0 {
		verdict = Invalid
		summary += fmt.Sprintf("; %d misbehaving clients' complete requests went unanswered or were answered late", len(clients))
		details = append(clients, details...)
	} else if len(clientsUnknown) > 0 && verdict == Valid {
		verdict = Unknown
		summary += "; " + clientsUnknown[0]
		details = append(details, clientsUnknown...)
	}
	if verdict == Valid && len(failed) > 0 {
		details = append(details, failed...) // within the objective, but shown
	}
	return Result{Verdict: verdict, Summary: summary, Details: capDetails(details)}
}

// clientAnswers judges the client faults by the outcome their heal
// recorded: each complete request they sent (every list_pipelines of a
// burst, each malformed frame, an oversized header) must have been
// answered. Incomplete requests (a stall, a disconnect) owe no answer.
// It returns the unanswered ones, and the faults whose outcome is unknown.
func clientAnswers(d *RunData) (bad, unknown []string) {
	for _, w := range nemesisFaults(d) {
		if w.OK == nil || w.Fault == nil || w.Fault.Level() != chaos.LevelClient {
			continue
		}
		obs := w.HealObserved
		name := describeOp(w.OK)
		switch w.F {
		case protocol.FaultClientBurst:
			if obs == nil || obs["done"] == false {
				unknown = append(unknown, name+": the burst's outcome was never recorded")
				continue
			}
			n, _ := numberField(obs, "unanswered")
			all, _ := numberField(obs, "clients")
			if n > 0 {
				bad = append(bad, fmt.Sprintf("%s: %d of %.0f clients got no answer to a complete list_pipelines (errors: %v)", name, int(n), all, obs["errors"]))
				continue
			}
			if ms, ok := numberField(obs, "max_latency_ms"); ok {
				if bound := RequestBound(protocol.TypeListPipelines, d.Bounds) + serialHold(d, w); time.Duration(ms*float64(time.Millisecond)) > bound {
					bad = append(bad, fmt.Sprintf("%s: the slowest of %.0f clients was answered after %.0fms, bound %v", name, all, ms, bound))
				}
			}
		case protocol.FaultMalformedFrame:
			answers, _ := obs["answers"].(map[string]any)
			if obs == nil || answers == nil {
				unknown = append(unknown, name+": the malformed frames' answers were never recorded")
				continue
			}
			for _, k := range slices.Sorted(maps.Keys(answers)) {
				if a, _ := answers[k].(string); unanswered(a) {
					bad = append(bad, fmt.Sprintf("%s: malformed frame %q got no answer (%s)", name, k, a))
				}
			}
		case protocol.FaultOversizedFrame:
			// Only a manager with a frame cap (a Corral extension) answers
			// a header whose body never comes; elsewhere it is an
			// incomplete request.
			if d.Profile.Name != "" && d.Profile.Name != ProfileCorral {
				continue
			}
			a, _ := obs["answer"].(string)
			switch {
			case obs == nil || obs["error"] != nil:
				unknown = append(unknown, name+": the oversized header was never sent")
			case unanswered(a):
				bad = append(bad, fmt.Sprintf("%s: the oversized header got no answer (%s)", name, a))
			}
		}
	}
	return bad, unknown
}

// completionTime is c's time, or 0 when c is nil.
func completionTime(c *Op) int64 {
	if c == nil {
		return 0
	}
	return c.Time
}

// unanswered reports whether a client fault's recorded answer says the
// manager closed or timed out without a frame (not: the request was never
// sent, which is the client's side).
func unanswered(a string) bool {
	return a == "closed without a frame" || strings.HasPrefix(a, "no frame")
}

// serialHold is how long a serial target (Profile.Serial) may have been
// kept from a client fault's connections by the harness itself when w was
// injected: what remained of every other misbehaving connection the
// nemesis held open then, plus one sampler request (QueueTimeout), as
// serialBounds allows the workload. 0 for a concurrent target.
func serialHold(d *RunData, w faultWindow) time.Duration {
	if !d.Profile.Serial {
		return 0
	}
	return d.Bounds.QueueTimeout + clientHolds(d).remaining(w.Invoke.Time, w.Invoke.Index)
}
