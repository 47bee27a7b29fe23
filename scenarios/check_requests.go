package scenarios

import (
	"fmt"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Slack allowed on top of the queue timeout for commands that may start a
// worker process, and the bound of commands that never wait on a worker.
const (
	ProcessStartSlack = 2 * time.Second
	TableReadBound    = time.Second
)

// RequestBound is how long the manager may take to answer command f.
func RequestBound(f string, b Bounds) time.Duration {
	switch f {
	case protocol.TypeTerminate:
		return b.Grace + b.Join + b.Epsilon
	case protocol.TypeInit:
		return b.QueueTimeout + ProcessStartSlack + b.Epsilon
	case protocol.TypeListPipelines, protocol.TypeInspect:
		return TableReadBound + b.Epsilon
	default: // status, consume_result, mute, resume and anything else sent to a worker
		return b.QueueTimeout + b.Epsilon
	}
}

// shutdownCut reports whether an error text says the connection was cut
// or refused by a manager on its way out.
func shutdownCut(errText string) bool {
	e := strings.ToLower(errText)
	for _, s := range []string{"refused", "reset", "eof", "closed", "broken pipe", "shut", "terminat"} {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// checkRequestsAnswered: every client invoke completes exactly once, ok or
// fail, within its bound. Invokes after the shutdown request (less
// epsilon) are exempt from the bound and may end in info when the
// manager's end cut them.
func checkRequestsAnswered(d *RunData) Result {
	v := newOpView(d.Ops)
	b := d.Bounds
	sd := d.Shutdown
	exemptFrom := int64(-1)
	if sd.Signal != "" {
		exemptFrom = sd.Requested - int64(b.Epsilon)
	}
	var details []string
	var total, noAnswer, late, dup, missing int
	boundOf := requestBounder(d, v)
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !isClientProcess(inv.Process) {
			continue
		}
		total++
		exempt := exemptFrom >= 0 && inv.Time >= exemptFrom
		cs := v.compls[inv.Index]
		switch {
		case len(cs) == 0:
			missing++
			details = append(details, describeOp(inv)+": never completed")
			continue
		case len(cs) > 1:
			dup++
			var idx []string
			for _, c := range cs {
				idx = append(idx, fmt.Sprintf("%d (%s)", c.Index, c.Type))
			}
			details = append(details, fmt.Sprintf("%s: completed %d times, by ops %s", describeOp(inv), len(cs), strings.Join(idx, ", ")))
		}
		c := cs[0]
		took := c.Duration(*inv)
		if c.Type == OpInfo {
			cutByEnd := sd.Exited == 0 || c.Time >= sd.Exited-int64(b.Epsilon)
			if exempt && (shutdownCut(c.Error) || cutByEnd) {
				continue
			}
			noAnswer++
			reason := c.Error
			if reason == "" {
				reason = "unknown"
			}
			details = append(details, fmt.Sprintf("%s: no answer after %v (%s)", describeOp(inv), took.Round(time.Millisecond), reason))
			continue
		}
		if bound := boundOf(inv); !exempt && took > bound {
			late++
			details = append(details, fmt.Sprintf("%s: answered %s after %v, bound %v", describeOp(inv), c.Type,
				took.Round(time.Millisecond), bound))
		}
	}
	if len(details) == 0 {
		return Result{Verdict: Valid, Summary: fmt.Sprintf("all %d requests answered once within their bounds", total)}
	}
	return Result{
		Verdict: Invalid,
		Summary: fmt.Sprintf("%d of %d requests: %d without answer, %d never completed, %d late, %d answered twice",
			noAnswer+missing+late+dup, total, noAnswer, missing, late, dup),
		Details: capDetails(details),
	}
}

// responseShape says which fields an ok answer to a command must and must
// not carry, so an answer delivered to the wrong caller shows.
var responseShapes = map[string]struct{ must, mustNot []string }{
	protocol.TypeStatus:        {must: []string{"report"}, mustNot: []string{"outputs", "frames_metadata", "pipelines"}},
	protocol.TypeConsumeResult: {must: []string{"outputs", "frames_metadata"}, mustNot: []string{"report", "pipelines"}},
	protocol.TypeListPipelines: {must: []string{"pipelines"}, mustNot: []string{"report", "outputs"}},
	protocol.TypeMute:          {mustNot: []string{"report", "outputs", "frames_metadata", "pipelines"}},
	protocol.TypeResume:        {mustNot: []string{"report", "outputs", "frames_metadata", "pipelines"}},
	protocol.TypeInit:          {mustNot: []string{"report", "outputs", "frames_metadata", "pipelines"}},
	protocol.TypeTerminate:     {mustNot: []string{"report", "outputs", "frames_metadata", "pipelines"}},
}

// checkResponsesMatch: each ok answer has the shape of its request's
// answer, and its pipeline when the answer names one; an init whose
// payload was deliberately invalid (MixInitInvalid) is never answered ok.
func checkResponsesMatch(d *RunData) Result {
	v := newOpView(d.Ops)
	var details []string
	var checked int
	for i := range d.Ops {
		c := &d.Ops[i]
		if c.Type != OpOK || !isClientProcess(c.Process) {
			continue
		}
		inv, ok := v.byIdx[c.Invoke]
		if !ok {
			inv = c
		}
		shape, ok := responseShapes[c.F]
		if !ok {
			continue
		}
		checked++
		m := valueFields(c.Value)
		var wrong []string
		for _, k := range shape.must {
			if _, ok := m[k]; !ok {
				wrong = append(wrong, "no "+k)
			}
		}
		for _, k := range shape.mustNot {
			if _, ok := m[k]; ok {
				wrong = append(wrong, "carries "+k)
			}
		}
		if c.F == protocol.TypeConsumeResult {
			if _, isList := m["outputs"].([]any); m["outputs"] != nil && !isList {
				wrong = append(wrong, "outputs is not a list")
			}
		}
		if c.F == protocol.TypeInit && deliberatelyInvalid(inv) {
			// The request lacked a section the model requires: only a
			// refusal matches it.
			wrong = append(wrong, fmt.Sprintf("its payload was deliberately invalid (%v)", valueFields(inv.Value)[invalidInitField]))
		}
		if c.F != protocol.TypeInit && c.F != protocol.TypeListPipelines && c.PipelineID != "" {
			if id, ok := m["pipeline_id"].(string); ok && id != "" && id != c.PipelineID {
				wrong = append(wrong, "answers for pipeline "+id)
			}
		}
		if len(wrong) > 0 {
			details = append(details, fmt.Sprintf("%s: ok answer (op %d) does not match a %s request: %s",
				describeOp(inv), c.Index, c.F, strings.Join(wrong, ", ")))
		}
	}
	if len(details) == 0 {
		return Result{Verdict: Valid, Summary: fmt.Sprintf("all %d ok answers match their requests", checked)}
	}
	return Result{Verdict: Invalid,
		Summary: fmt.Sprintf("%d of %d ok answers do not match their requests (another request's answer, or ok to a payload that must be refused)", len(details), checked),
		Details: capDetails(details)}
}
