package worker

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Source states of the upstream status report.
const (
	stateNotStarted   = "NOT_STARTED"
	stateInitialising = "INITIALISING"
	stateRestarting   = "RESTARTING"
	stateRunning      = "RUNNING"
	statePaused       = "PAUSED"
	stateMuted        = "MUTED"
	stateEnded        = "ENDED"
	stateError        = "ERROR"
)

// Severities are Python logging levels, as upstream reports them.
const (
	severityInfo    = 20
	severityWarning = 30
	severityError   = 40
)

// Contexts name the upstream component an event comes from.
const (
	contextSource   = "video_source"
	contextPipeline = "inference_pipeline"
)

const (
	// maxEvents bounds video_source_status_updates: a report shows the
	// recent past, not the pipeline's whole life.
	maxEvents = 32
	// maxPayloadText bounds each text value of an event payload (an error
	// message), so the events kept bound the report's size too.
	maxPayloadText = 512
	// maxSamples bounds the frames latency averages are taken over.
	maxSamples = 64
	// throughputWindow is how far back inference_throughput counts
	// frames; a muted pipeline's throughput falls to 0 after it.
	throughputWindow = 2 * time.Second
)

// event is one video_source_status_updates element.
type event struct {
	at       time.Time
	severity int
	kind     string
	payload  map[string]any
	context  string
}

func (e event) report() map[string]any {
	payload := e.payload
	if payload == nil {
		payload = map[string]any{}
	}
	return map[string]any{
		"timestamp":  pyTime(e.at),
		"severity":   e.severity,
		"event_type": e.kind,
		"payload":    payload,
		"context":    e.context,
	}
}

// sample is the latency of one frame through the pipeline.
type sample struct {
	done                   time.Time
	decode, inference, e2e time.Duration
}

// sourceStatus is what the monitor knows of one source.
type sourceStatus struct {
	state   string
	samples []sample // oldest first, at most maxSamples
	// lastFrame is when the source last delivered a frame (or its current
	// connection attempt began): the watchdog's clock.
	lastFrame time.Time
	// waiting is set while the reader is blocked on a full WAIT buffer:
	// the consumer, not the source, is slow then.
	waiting bool
	// stalled is set from the watchdog's report until the next frame.
	stalled bool
}

// monitor holds what a status report shows that goroutines other than the
// command loop update: states, recent events and recent frame latencies.
type monitor struct {
	mu      sync.Mutex
	sources []sourceStatus
	events  []event // oldest first, at most maxEvents
	started time.Time
	// finished is set when the inference stage has ended after every
	// source ended (INFERENCE_THREAD_FINISHED).
	finished bool
	// settled is closed once no source is NOT_STARTED or INITIALISING
	// any more: each is running or has failed to open.
	settled     chan struct{}
	settledOnce bool
}

func newMonitor(sources int, now time.Time) *monitor {
	m := &monitor{sources: make([]sourceStatus, sources), started: now, settled: make(chan struct{})}
	for i := range m.sources {
		m.sources[i].state = stateNotStarted
		m.sources[i].lastFrame = now
	}
	return m
}

// emit records an event, dropping the oldest beyond maxEvents; payload
// text longer than maxPayloadText is cut (marked with an ellipsis).
func (m *monitor) emit(severity int, kind, ctx string, payload map[string]any) {
	for k, v := range payload {
		if text, ok := v.(string); ok && len(text) > maxPayloadText {
			payload[k] = strings.ToValidUTF8(text[:maxPayloadText], "") + "…"
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.emitLocked(event{at: time.Now(), severity: severity, kind: kind, payload: payload, context: ctx})
}

func (m *monitor) emitLocked(e event) {
	if len(m.events) == maxEvents {
		m.events = append(m.events[:0], m.events[1:]...)
	}
	m.events = append(m.events, e)
}

// transition moves source id to state to if its current state is one of
// from (any state when from is empty) and records a SOURCE_STATE_UPDATE
// event. It reports whether the state changed.
func (m *monitor) transition(id int, to string, from ...string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.transitionLocked(id, to, from...)
}

func (m *monitor) transitionLocked(id int, to string, from ...string) bool {
	src := &m.sources[id]
	if src.state == to || len(from) > 0 && !slices.Contains(from, src.state) {
		return false
	}
	m.emitLocked(event{
		at: time.Now(), severity: severityInfo, kind: "SOURCE_STATE_UPDATE", context: contextSource,
		payload: map[string]any{"previous_state": src.state, "new_state": to, "source_id": id},
	})
	src.state = to
	if !m.settledOnce && !slices.ContainsFunc(m.sources, func(s sourceStatus) bool {
		return s.state == stateNotStarted || s.state == stateInitialising
	}) {
		m.settledOnce = true
		close(m.settled)
	}
	return true
}

// transitionAll moves every source to state to, all or none: each must be
// in one of from (upstream's stream refuses the operation otherwise). It
// returns the state that refused, or "" on success.
func (m *monitor) transitionAll(to string, from ...string) (refused string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, src := range m.sources {
		if !slices.Contains(from, src.state) {
			return src.state
		}
	}
	for id := range m.sources {
		m.transitionLocked(id, to, from...)
	}
	return ""
}

func (m *monitor) state(id int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sources[id].state
}

// record adds one frame's latencies to source id.
func (m *monitor) record(id int, s sample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	src := &m.sources[id]
	if len(src.samples) == maxSamples {
		src.samples = append(src.samples[:0], src.samples[1:]...)
	}
	src.samples = append(src.samples, s)
}

// frameRead resets source id's watchdog clock; it returns true when the
// source had been reported stalled (it has recovered).
func (m *monitor) frameRead(id int, at time.Time) (recovered bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	src := &m.sources[id]
	src.lastFrame = at
	recovered, src.stalled = src.stalled, false
	return recovered
}

// setWaiting marks source id as blocked on its consumer (or not).
func (m *monitor) setWaiting(id int, waiting bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	src := &m.sources[id]
	src.waiting = waiting
	if !waiting {
		src.lastFrame = time.Now()
	}
}

// resetClock starts source id's watchdog clock anew (a connection attempt
// begins).
func (m *monitor) resetClock(id int, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sources[id].lastFrame = at
}

// fail moves source id to ERROR for good (its reader has ended): a stall
// reported while it was connecting is over.
func (m *monitor) fail(id int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sources[id].stalled = false
	m.transitionLocked(id, stateError)
}

// finish records the end of the inference stage.
func (m *monitor) finish() {
	m.mu.Lock()
	m.finished = true
	m.mu.Unlock()
	m.emit(severityInfo, "INFERENCE_THREAD_FINISHED", contextPipeline, nil)
}

// health reports whether a source that cannot reconnect is stalled, and
// whether the inference stage finished after every source ended.
func (m *monitor) health(reconnectable func(id int) bool) (stalled, finished bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, src := range m.sources {
		if src.stalled && !reconnectable(id) {
			stalled = true
		}
	}
	return stalled, m.finished
}

// overall is the pipeline's state as one value (the Corral extension key
// "state"): the state of the liveliest source.
func (m *monitor) overall() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	best, rank := stateNotStarted, -1
	order := []string{stateEnded, stateError, stateNotStarted, stateInitialising, stateRestarting, stateMuted, stateRunning}
	for _, src := range m.sources {
		if r := slices.Index(order, src.state); r > rank {
			best, rank = src.state, r
		}
	}
	return best
}

// snapshot returns the report's live parts: states, events, one latency
// report per source (nulls until its first frame is through, as upstream)
// and the throughput of all sources together.
func (m *monitor) snapshot(now time.Time) (states []string, events, latency []any, throughput pyFloat) {
	m.mu.Lock()
	defer m.mu.Unlock()
	events = make([]any, 0, len(m.events))
	for _, e := range m.events {
		events = append(events, e.report())
	}
	latency = make([]any, 0, len(m.sources))
	var recent, kept int
	var oldest time.Time
	for id, src := range m.sources {
		states = append(states, src.state)
		var decode, inference, e2e time.Duration
		n := len(src.samples)
		for _, s := range src.samples {
			decode += s.decode
			inference += s.inference
			e2e += s.e2e
			if now.Sub(s.done) <= throughputWindow {
				recent++
			}
		}
		if n > 0 && (oldest.IsZero() || src.samples[0].done.Before(oldest)) {
			oldest = src.samples[0].done
		}
		kept += n
		latency = append(latency, map[string]any{
			"source_id":              id,
			"frame_decoding_latency": optSeconds(decode, n),
			"inference_latency":      optSeconds(inference, n),
			"e2e_latency":            optSeconds(e2e, n),
		})
	}
	switch {
	case recent > 0 && recent == kept && kept >= maxSamples:
		// Every kept sample is recent, so the window held more frames
		// than were kept: measure over the kept ones.
		if span := now.Sub(oldest); span > 0 {
			throughput = pyFloat(float64(kept) / span.Seconds())
		}
	case recent > 0:
		// Right after start the window is shorter than
		// throughputWindow.
		if window := min(throughputWindow, now.Sub(m.started)); window > 0 {
			throughput = pyFloat(float64(recent) / window.Seconds())
		}
	}
	return states, events, latency, throughput
}
