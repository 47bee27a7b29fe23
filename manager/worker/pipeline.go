package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Reconnection backoff of reconnectable sources (streams, cameras): it
// doubles from the first to the last value and resets once a connection
// delivers frames again.
const (
	reconnectBackoffMin = 100 * time.Millisecond
	reconnectBackoffMax = 5 * time.Second
)

// frame is one decoded frame on its way to the model.
type frame struct {
	id       int
	captured time.Time
	decode   time.Duration
	luma     []byte
}

// feed is one source of a pipeline: its spec, its decoded-frame buffer and
// the source currently open (nil between connections).
type feed struct {
	id     int
	spec   sourceSpec
	buf    *frameBuffer
	nextID int // the next frame id; ids go on across reconnections

	mu     sync.Mutex
	src    source
	cancel context.CancelCauseFunc // ends the current connection attempt
}

func (f *feed) setSource(src source, cancel context.CancelCauseFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.src, f.cancel = src, cancel
}

// props is the open source's properties; ok is false while none is open
// (upstream reports source_properties null then).
func (f *feed) props() (p sourceProps, ok bool) {
	f.mu.Lock()
	src := f.src
	f.mu.Unlock()
	if src == nil {
		return sourceProps{}, false
	}
	return src.props(), true
}

// abandon ends the current connection attempt with cause.
func (f *feed) abandon(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		f.cancel(cause)
	}
}

// pipeline is one running set of sources -> model -> sink. Its goroutines
// (one reader per source, the inference stage, the watchdog) are started
// by startPipeline and waited for by stop.
type pipeline struct {
	spec    *spec
	log     *slog.Logger
	feeds   []*feed
	results *results
	monitor *monitor
	tracer  Tracer // nil traces nothing
	// ready wakes the inference stage when any source buffers a frame or
	// ends.
	ready chan struct{}
	// frozen is closed while the freeze_source fault holds every source:
	// connected, but delivering nothing.
	frozen *gate

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startPipeline starts the goroutines for s.
func startPipeline(ctx context.Context, s *spec, log *slog.Logger, tracer Tracer) *pipeline {
	ctx, cancel := context.WithCancel(ctx)
	now := time.Now()
	p := &pipeline{
		spec:    s,
		log:     log,
		results: newResults(s.resultsSize),
		monitor: newMonitor(len(s.sources), now),
		tracer:  tracer,
		ready:   make(chan struct{}, 1),
		frozen:  newGate(),
		cancel:  cancel,
	}
	for i, src := range s.sources {
		p.feeds = append(p.feeds, &feed{
			id: i, spec: src, nextID: 1,
			buf: newFrameBuffer(s.decodingSize, s.filling, s.consumption, p.ready),
		})
	}
	p.monitor.emit(severityInfo, "INFERENCE_THREAD_STARTED", contextPipeline, nil)
	p.wg.Add(len(p.feeds) + 2)
	for _, f := range p.feeds {
		go func() { defer p.wg.Done(); p.read(ctx, f) }()
	}
	go func() { defer p.wg.Done(); p.infer(ctx) }()
	go func() { defer p.wg.Done(); p.watch(ctx) }()
	log.Info("pipeline started", "sources", len(p.feeds), "reference", s.sources[0].reference)
	return p
}

// stop cancels the goroutines and waits for them. Safe to call twice.
func (p *pipeline) stop() {
	p.cancel()
	p.wg.Wait()
}

// mute stops buffering the sources' frames (they are still read and
// dropped, as upstream's muted VideoSource does). Every source must be
// RUNNING; otherwise it returns the refusing state and changes nothing.
func (p *pipeline) mute() (refused string) {
	return p.monitor.transitionAll(stateMuted, stateRunning)
}

// resume undoes mute (or a pause); every source must be PAUSED or MUTED.
func (p *pipeline) resume() (refused string) {
	return p.monitor.transitionAll(stateRunning, statePaused, stateMuted)
}

// read owns source f: it connects, reads frames into f's buffer, and
// reconnects a reconnectable source with backoff when it ends, fails or
// stalls after having delivered frames. A source that cannot be opened at
// first ends in ERROR, as upstream reports it.
func (p *pipeline) read(ctx context.Context, f *feed) {
	defer f.buf.close()
	backoff := reconnectBackoffMin
	connected := false
	for attempt := 0; ; attempt++ {
		if attempt == 0 {
			p.monitor.transition(f.id, stateInitialising)
		} else {
			p.monitor.transition(f.id, stateRestarting)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, reconnectBackoffMax)
		}
		p.monitor.resetClock(f.id, time.Now())
		actx, cancel := context.WithCancelCause(ctx)
		f.setSource(nil, cancel)
		src, err := f.spec.open(actx)
		if err != nil {
			cancel(nil)
			if ctx.Err() != nil {
				return
			}
			if !connected || !f.spec.reconnectable {
				p.failSource(f, "SOURCE_CONNECTION_FAILED", err)
				return
			}
			p.log.Warn("source reconnection failed", "source_id", f.id, "err", err, "backoff", backoff)
			continue
		}
		connected = true
		f.setSource(src, cancel)
		p.monitor.emit(severityInfo, "SOURCE_CONNECTION_ESTABLISHED", contextSource,
			map[string]any{"source_id": f.id, "source_reference": f.spec.reference})
		p.monitor.transition(f.id, stateRunning)
		p.monitor.emit(severityInfo, "VIDEO_CONSUMPTION_STARTED", contextSource, map[string]any{"source_id": f.id})
		frames, err := p.consume(actx, f, src)
		_ = src.close()
		stalled := context.Cause(actx)
		cancel(nil)
		if ctx.Err() != nil {
			return
		}
		if frames > 0 {
			backoff = reconnectBackoffMin
		}
		switch {
		case f.spec.reconnectable:
			if stalled != nil {
				err = stalled
			}
			p.monitor.emit(severityWarning, "SOURCE_CONNECTION_LOST", contextSource,
				map[string]any{"source_id": f.id, "error_message": errText(err)})
			p.log.Warn("source lost, reconnecting", "source_id", f.id, "err", err)
		case errors.Is(err, io.EOF):
			p.monitor.emit(severityInfo, "VIDEO_CONSUMPTION_FINISHED", contextSource, map[string]any{"source_id": f.id})
			p.monitor.transition(f.id, stateEnded)
			p.log.Info("source ended", "source_id", f.id, "frames", f.nextID-1)
			return
		default:
			p.failSource(f, "SOURCE_ERROR", err)
			return
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "end of stream"
	}
	return err.Error()
}

// failSource reports source f in ERROR with the reason, as upstream's
// status shows a source that cannot be opened or read.
func (p *pipeline) failSource(f *feed, kind string, err error) {
	p.monitor.emit(severityError, kind, contextSource, map[string]any{
		"source_id": f.id, "source_reference": f.spec.reference,
		"error_type": "SourceConnectionError", "error_message": err.Error(),
	})
	p.monitor.fail(f.id)
	p.log.Error("source failed", "source_id", f.id, "reference", f.spec.reference, "err", err)
}

// consume reads frames from src into f's buffer until src ends or fails or
// ctx ends; it returns the frames read. Sources that are not live are
// paced at their rate (capped by max_fps); live ones deliver at theirs and
// frames beyond max_fps are dropped. A muted source's frames are read and
// dropped.
func (p *pipeline) consume(ctx context.Context, f *feed, src source) (frames int, err error) {
	props := src.props()
	rate := props.fps
	if p.spec.maxFPS > 0 {
		rate = min(rate, p.spec.maxFPS)
	}
	interval := time.Duration(float64(time.Second) / max(rate, 0.001))
	var tick <-chan time.Time
	if !src.live() {
		ticker := time.NewTicker(max(interval, time.Microsecond))
		defer ticker.Stop()
		tick = ticker.C
	}
	var lastKept time.Time
	wait := p.spec.filling == protocol.FillWait
	for {
		if tick != nil {
			select {
			case <-ctx.Done():
				return frames, ctx.Err()
			case <-tick:
			}
		}
		if !p.frozen.wait(ctx) {
			return frames, ctx.Err()
		}
		fr := frame{id: f.nextID, captured: time.Now(), luma: make([]byte, props.width*props.height)}
		if err := src.read(fr.luma, fr.id); err != nil {
			return frames, err
		}
		fr.decode = time.Since(fr.captured)
		f.nextID++
		frames++
		if p.monitor.frameRead(f.id, time.Now()) {
			p.monitor.transition(f.id, stateRunning, stateError)
			p.monitor.emit(severityInfo, protocol.EventSourceStallRecovered, contextSource, map[string]any{"source_id": f.id})
		}
		if src.live() && p.spec.maxFPS > 0 && !lastKept.IsZero() && fr.captured.Sub(lastKept) < interval {
			continue
		}
		lastKept = fr.captured
		if p.monitor.state(f.id) == stateMuted {
			continue
		}
		if wait {
			p.monitor.setWaiting(f.id, true)
		}
		err := f.buf.put(ctx, fr)
		if wait {
			p.monitor.setWaiting(f.id, false)
		}
		if err != nil {
			return frames, err
		}
	}
}

// infer takes one frame from every source that has one (per the
// consumption strategy), runs the model on each and puts the round's
// results into the sink as one entry. It ends once every source has ended
// and its buffer is drained (INFERENCE_THREAD_FINISHED).
func (p *pipeline) infer(ctx context.Context) {
	prev := make([][]byte, len(p.feeds))
	for {
		var round batch
		done := 0
		for _, f := range p.feeds {
			fr, ok, closed := f.buf.take()
			if closed {
				done++
			}
			if !ok {
				continue
			}
			start := time.Now()
			var end func()
			if p.tracer != nil {
				end = p.tracer.Frame(ctx, fr.id)
			}
			a := analyse(fr.luma, prev[f.id])
			burn(ctx, fr.luma, p.spec.cost)
			if end != nil {
				end()
			}
			prev[f.id] = fr.luma
			props, _ := f.props()
			round = append(round, result{
				sourceID: f.id, frameID: fr.id, timestamp: fr.captured,
				width: props.width, height: props.height, analysis: a,
			})
			now := time.Now()
			p.monitor.record(f.id, sample{done: now, decode: fr.decode, inference: now.Sub(start), e2e: now.Sub(fr.captured)})
		}
		if len(round) > 0 {
			p.results.put(round)
			continue
		}
		if done == len(p.feeds) {
			p.monitor.finish()
			return
		}
		select {
		case <-p.ready:
		case <-ctx.Done():
			return
		}
	}
}

// report is the status report of a started pipeline, with upstream's keys
// and types (PROTOCOL.md) and Corral's extension keys "state" (the
// liveliest source state), "stalled" (a source that cannot reconnect has
// delivered no frame within its stall timeout: the manager's health probe
// counts it as failing) and "finished" (every source ended, inference
// finished and every result was consumed: the manager removes the
// pipeline).
func (p *pipeline) report() map[string]any {
	states, events, latency, throughput := p.monitor.snapshot(time.Now())
	s := p.spec
	sources := make([]any, 0, len(p.feeds))
	for i, f := range p.feeds {
		var props any // null until the source is open, as upstream
		if sp, ok := f.props(); ok {
			props = map[string]any{
				"width": sp.width, "height": sp.height, "total_frames": sp.total,
				"is_file": sp.isFile, "fps": pyFloat(sp.fps),
				// Upstream fills it only for some file containers.
				"timestamp_created": nil,
				"is_reconnectable":  f.spec.reconnectable,
			}
		}
		sources = append(sources, map[string]any{
			"source_properties":           props,
			"source_reference":            f.spec.reference,
			"buffer_size":                 s.decodingSize,
			"state":                       states[i],
			"buffer_filling_strategy":     s.filling,
			"buffer_consumption_strategy": s.consumption,
			"source_id":                   i,
		})
	}
	stalled, finished := p.monitor.health(func(id int) bool { return p.feeds[id].spec.reconnectable })
	return map[string]any{
		"video_source_status_updates": events,
		"latency_reports":             latency,
		"inference_throughput":        throughput,
		"sources_metadata":            sources,
		protocol.ReportKeyState:       p.monitor.overall(),
		protocol.ReportKeyStalled:     stalled,
		protocol.ReportKeyFinished:    finished && p.results.empty(),
	}
}

// idleReport is the status report of a worker that has not been initialised.
func idleReport() map[string]any {
	return map[string]any{
		"video_source_status_updates": []any{},
		"latency_reports":             []any{},
		"inference_throughput":        pyFloat(0),
		"sources_metadata":            []any{},
		protocol.ReportKeyState:       stateNotStarted,
	}
}

// gate blocks waiters while it is closed.
type gate struct {
	mu     sync.Mutex
	opened chan struct{} // closed while the gate is open
}

func newGate() *gate {
	g := &gate{opened: make(chan struct{})}
	close(g.opened)
	return g
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.opened:
		g.opened = make(chan struct{})
	default:
	}
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.opened:
	default:
		close(g.opened)
	}
}

// wait blocks while the gate is closed; false means ctx ended.
func (g *gate) wait(ctx context.Context) bool {
	g.mu.Lock()
	ch := g.opened
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// stallError is the cause the watchdog gives an abandoned connection.
func stallError(d time.Duration) error {
	return fmt.Errorf("no frame for %s (STREAM_MANAGER_SOURCE_STALL_TIMEOUT)", d.Round(time.Millisecond))
}
