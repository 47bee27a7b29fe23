package property

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// recorder keeps the manager's events, indexes the ones that justify a
// pipeline leaving the table by itself, and wakes waiters on each event.
type recorder struct {
	mu       sync.Mutex
	events   []manager.Event
	evidence map[string]string // pipeline id -> first sign of trouble
	more     chan struct{}     // closed and replaced on each event

	// strict, when set, looks at the table from inside the hook each time
	// a probe brings a pipeline to maxFailures (see strictHealth).
	strict      func() manager.Snapshot
	maxFailures int
	violation   string // the first one strict saw
}

func newRecorder() *recorder {
	return &recorder{evidence: map[string]string{}, more: make(chan struct{})}
}

func (r *recorder) hook(e manager.Event) {
	var seen string
	if pr, ok := e.(manager.ProbeResult); ok && pr.ConsecutiveFailures >= r.maxFailures {
		r.mu.Lock()
		strict := r.strict
		r.mu.Unlock()
		if strict != nil { // the hook runs without the manager's lock held
			for _, p := range strict().Pipelines {
				if p.PipelineID == pr.PipelineID && !p.MarkedForRemoval {
					seen = fmt.Sprintf("probe_result says %d consecutive failures (max %d) but the table has %+v",
						pr.ConsecutiveFailures, r.maxFailures, p)
				}
			}
		}
	}
	r.mu.Lock()
	if r.violation == "" {
		r.violation = seen
	}
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	note := func(id, why string) {
		if _, ok := r.evidence[id]; !ok && id != "" {
			r.evidence[id] = why
		}
	}
	switch e := e.(type) {
	case manager.CommandTimedOut:
		note(e.PipelineID, fmt.Sprintf("%s timed out after %s", e.Command, e.After))
	case manager.ProbeResult:
		if e.Err != nil {
			note(e.PipelineID, fmt.Sprintf("probe failed: %v", e.Err))
		}
	case manager.PipelineError:
		note(e.PipelineID, fmt.Sprintf("%s: %v", e.Op, e.Err))
	}
	close(r.more)
	r.more = make(chan struct{})
}

// changed is closed at the next event.
func (r *recorder) changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.more
}

// strictViolation returns what strict saw, if anything.
func (r *recorder) strictViolation() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.violation
}

// index returns the number of events so far, for waitFrom.
func (r *recorder) index() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// trouble returns the first timeout, failed probe or pipeline error seen
// for id: what allows a pipeline the model thinks healthy to be stopped.
func (r *recorder) trouble(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	why, ok := r.evidence[id]
	return why, ok
}

// waitFor waits up to d for an event matching pred (earlier ones count).
func (r *recorder) waitFor(d time.Duration, pred func(manager.Event) bool) (manager.Event, bool) {
	return r.waitFrom(0, d, pred)
}

// waitFrom waits up to d for an event matching pred, from event number
// seen on.
func (r *recorder) waitFrom(seen int, d time.Duration, pred func(manager.Event) bool) (manager.Event, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for ; seen < len(r.events); seen++ {
			if pred(r.events[seen]) {
				e := r.events[seen]
				r.mu.Unlock()
				return e, true
			}
		}
		more := r.more
		r.mu.Unlock()
		select {
		case <-more:
		case <-deadline.C:
			return nil, false
		}
	}
}

// history renders the events about id, for failure messages.
func (r *recorder) history(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		if eventPipeline(e) == id {
			fmt.Fprintf(&b, "\n\t%s %+v", e.Kind(), e)
		}
	}
	return b.String()
}

func eventPipeline(e manager.Event) string {
	switch e := e.(type) {
	case manager.PipelineStateChanged:
		return e.PipelineID
	case manager.ProbeResult:
		return e.PipelineID
	case manager.TimeoutChanged:
		return e.PipelineID
	case manager.CommandTimedOut:
		return e.PipelineID
	case manager.StaleResponse:
		return e.PipelineID
	case manager.WorkerExited:
		return e.PipelineID
	case manager.PipelineError:
		return e.PipelineID
	}
	return ""
}

// request builds a request the way the server does: JSON through
// protocol.ParseRequest.
func request(typ, id string, fields map[string]any) (*protocol.Request, error) {
	body := map[string]any{"type": typ}
	if id != "" {
		body["pipeline_id"] = id
	}
	for k, v := range fields {
		body[k] = v
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return protocol.ParseRequest(raw)
}

func initFields(ref any) map[string]any {
	return map[string]any{"video_configuration": map[string]any{"video_reference": ref}}
}

// errOverdue is returned by call when Handle did not return within its bound.
var errOverdue = errors.New("Handle did not return within its bound")

// latencies keeps the slowest Handle call per request type across checks.
type latencies struct {
	mu      sync.Mutex
	max     map[string]time.Duration
	calls   int
	actions map[string]int // actions completed, by name
}

func (l *latencies) count(action string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.actions == nil {
		l.actions = map[string]int{}
	}
	l.actions[action]++
}

func (l *latencies) record(typ string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max == nil {
		l.max = map[string]time.Duration{}
	}
	l.max[typ] = max(l.max[typ], d)
	l.calls++
}

func (l *latencies) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.max))
	for k := range l.max {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d Handle calls; slowest per type:", l.calls)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, l.max[k].Round(time.Millisecond))
	}
	b.WriteString("; actions completed:")
	for _, k := range sortedKeys(l.actions) {
		fmt.Fprintf(&b, " %s=%d", k, l.actions[k])
	}
	return b.String()
}

// call runs one Handle and waits for it at most bound. On errOverdue the
// Handle goroutine is left behind (and goleak will name it): the test has
// failed by then.
func call(h manager.Handler, req *protocol.Request, bound time.Duration, lat *latencies) (protocol.Response, time.Duration, error) {
	type result struct {
		resp protocol.Response
		took time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		resp := h.Handle(context.Background(), req)
		done <- result{resp, time.Since(start)}
	}()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case r := <-done:
		lat.record(req.Type, r.took)
		return r.resp, r.took, nil
	case <-timer.C:
		return protocol.Response{}, bound, fmt.Errorf("%s %s: %w (%s)", req.Type, req.PipelineID, errOverdue, bound)
	}
}

// Outcome classes of a response, as the properties need them.
func isType(r protocol.Response, typ string) bool { return !r.OK() && r.ErrorType == typ }

// isTimeout reports an answer whose outcome is unknown: the worker did not
// answer in time, so the command may or may not have taken effect.
func isTimeout(r protocol.Response) bool {
	return isType(r, protocol.ErrTypeOperation) && strings.Contains(r.ErrorMessage, "did not answer")
}

func describe(r protocol.Response) string {
	if r.OK() {
		keys := make([]string, 0, len(r.Fields))
		for k := range r.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return fmt.Sprintf("success %v", keys)
	}
	return fmt.Sprintf("%s: %s", r.ErrorType, r.ErrorMessage)
}

// shapeError checks that a response matches its request: the envelope's
// pipeline id, an error type on failures, and the body of each success.
func shapeError(req *protocol.Request, r protocol.Response) error {
	if req.Type != protocol.TypeInit && r.PipelineID != req.PipelineID {
		return fmt.Errorf("%s for %q answered for pipeline %q", req.Type, req.PipelineID, r.PipelineID)
	}
	switch r.Status {
	case protocol.StatusSuccess:
		if r.ErrorType != "" {
			return fmt.Errorf("%s: success with error_type %q", req.Type, r.ErrorType)
		}
	case protocol.StatusFailure:
		switch r.ErrorType {
		case protocol.ErrTypeInvalidPayload, protocol.ErrTypeNotFound, protocol.ErrTypeOperation, protocol.ErrTypeInternal:
		default:
			return fmt.Errorf("%s: failure with error_type %q", req.Type, r.ErrorType)
		}
		return nil
	default:
		return fmt.Errorf("%s: status %q", req.Type, r.Status)
	}
	has := func(k string) bool { _, ok := r.Fields[k]; return ok }
	switch req.Type {
	case protocol.TypeStatus:
		if !has("report") {
			return fmt.Errorf("status success without report: %s", describe(r))
		}
	case protocol.TypeConsumeResult:
		if !has("outputs") || !has("frames_metadata") || has("report") {
			return fmt.Errorf("consume_result success must have outputs and frames_metadata and no report: %s", describe(r))
		}
	case protocol.TypeInit:
		if r.PipelineID == "" {
			return errors.New("init success without a pipeline id")
		}
	case protocol.TypeListPipelines:
		if _, ok := r.Fields["pipelines"].([]string); !ok {
			return fmt.Errorf("list_pipelines: pipelines is %T", r.Fields["pipelines"])
		}
	case protocol.TypeInspect:
		if _, ok := r.Fields["pipelines"].([]protocol.PipelineInfo); !ok {
			return fmt.Errorf("inspect: pipelines is %T", r.Fields["pipelines"])
		}
	}
	return nil
}
