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
	stateRunning      = "RUNNING"
	stateMuted        = "MUTED"
	stateEnded        = "ENDED"
	stateError        = "ERROR"
)

// Severities are Python logging levels, as upstream reports them.
const (
	severityInfo  = 20
	severityError = 40
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
		"timestamp":  e.at.UTC().Format(time.RFC3339Nano),
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

// monitor holds what a status report shows that goroutines other than the
// command loop update: state, recent events and recent frame latencies.
type monitor struct {
	mu      sync.Mutex
	state   string
	events  []event  // oldest first, at most maxEvents
	samples []sample // oldest first, at most maxSamples
	started time.Time
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

// transition moves to state to if the current state is one of from (any
// state when from is empty) and records a SOURCE_STATE_UPDATE event. It
// reports whether the state changed.
func (m *monitor) transition(to string, from ...string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == to {
		return false
	}
	if len(from) > 0 && !slices.Contains(from, m.state) {
		return false
	}
	m.emitLocked(event{
		at: time.Now(), severity: severityInfo, kind: "SOURCE_STATE_UPDATE", context: contextSource,
		payload: map[string]any{"previous_state": m.state, "new_state": to},
	})
	m.state = to
	return true
}

func (m *monitor) currentState() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// record adds one frame's latencies.
func (m *monitor) record(s sample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) == maxSamples {
		m.samples = append(m.samples[:0], m.samples[1:]...)
	}
	m.samples = append(m.samples, s)
}

// snapshot returns the report's live parts: events, latency reports (empty
// until the first frame is through) and throughput.
func (m *monitor) snapshot(now time.Time) (state string, events, latency []any, throughput float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	events = make([]any, 0, len(m.events))
	for _, e := range m.events {
		events = append(events, e.report())
	}
	latency = []any{}
	if n := len(m.samples); n > 0 {
		var decode, inference, e2e time.Duration
		recent := 0
		for _, s := range m.samples {
			decode += s.decode
			inference += s.inference
			e2e += s.e2e
			if now.Sub(s.done) <= throughputWindow {
				recent++
			}
		}
		avg := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
		latency = append(latency, map[string]any{
			"source_id":              0,
			"frame_decoding_latency": avg(decode),
			"inference_latency":      avg(inference),
			"e2e_latency":            avg(e2e),
		})
		switch {
		case recent == maxSamples:
			// Every kept sample is recent, so the window held more
			// frames than were kept: measure over the kept ones.
			if span := now.Sub(m.samples[0].done); span > 0 {
				throughput = float64(n) / span.Seconds()
			}
		case recent > 0:
			// Right after start the window is shorter than
			// throughputWindow.
			if window := min(throughputWindow, now.Sub(m.started)); window > 0 {
				throughput = float64(recent) / window.Seconds()
			}
		}
	}
	return m.state, events, latency, throughput
}
