package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
)

// maxQueue bounds the capacity of the channels between stages, whatever
// decoding_buffer_size and predictions_queue_size ask for.
const maxQueue = 4096

// frame is one decoded frame on its way to the model.
type frame struct {
	id       int
	captured time.Time
	decode   time.Duration
	luma     []byte
}

// inferred is one analysed frame on its way to the sink.
type inferred struct {
	result
	decode, inference time.Duration
	captured          time.Time
}

// pipeline is one running source -> model -> sink chain. Its three
// goroutines are started by startPipeline and waited for by stop.
type pipeline struct {
	spec    *spec
	props   sourceProps
	log     *slog.Logger
	results *results
	gate    *gate
	monitor monitor
	tracer  Tracer // nil traces nothing

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startPipeline starts the goroutines for s. The pipeline owns s.src.
func startPipeline(ctx context.Context, s *spec, log *slog.Logger, tracer Tracer) *pipeline {
	ctx, cancel := context.WithCancel(ctx)
	p := &pipeline{
		spec:    s,
		props:   s.src.props(),
		log:     log,
		results: newResults(s.resultsSize, s.filling),
		gate:    newGate(),
		tracer:  tracer,
		cancel:  cancel,
	}
	p.monitor.state = stateNotStarted
	p.monitor.started = time.Now()
	p.monitor.transition(stateInitialising)
	p.monitor.emit(severityInfo, "SOURCE_CONNECTION_ESTABLISHED", contextSource,
		map[string]any{"source_reference": s.reference})
	p.monitor.transition(stateRunning)
	p.monitor.emit(severityInfo, "INFERENCE_THREAD_STARTED", contextPipeline, nil)

	frames := make(chan frame, min(s.decodingSize, maxQueue))
	analysed := make(chan inferred, min(s.predictionsSize, maxQueue))
	p.wg.Add(3)
	go func() { defer p.wg.Done(); p.produce(ctx, frames) }()
	go func() { defer p.wg.Done(); p.infer(ctx, frames, analysed) }()
	go func() { defer p.wg.Done(); p.sink(ctx, analysed) }()
	log.Info("pipeline started", "reference", s.reference, "fps", s.rate,
		"width", p.props.width, "height", p.props.height)
	return p
}

// stop cancels the goroutines and waits for them. Safe to call twice.
func (p *pipeline) stop() {
	p.cancel()
	p.wg.Wait()
}

// mute parks the source; a pipeline that has ended stays as it is.
func (p *pipeline) mute() {
	if p.monitor.transition(stateMuted, stateRunning) {
		p.gate.close()
	}
}

// resume undoes mute.
func (p *pipeline) resume() {
	if p.monitor.transition(stateRunning, stateMuted) {
		p.gate.open()
	}
}

// produce reads frames at the pipeline's rate until the source ends or ctx
// is cancelled. Ticks that come while the pipeline waits are dropped, as a
// live camera's frames would be.
func (p *pipeline) produce(ctx context.Context, out chan<- frame) {
	defer close(out)
	defer p.spec.src.close()
	interval := time.Duration(float64(time.Second) / p.spec.rate)
	ticker := time.NewTicker(max(interval, time.Microsecond))
	defer ticker.Stop()
	p.monitor.emit(severityInfo, "VIDEO_CONSUMPTION_STARTED", contextSource, nil)
	for id := 1; ; id++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if !p.gate.wait(ctx) {
			return
		}
		f := frame{id: id, captured: time.Now(), luma: make([]byte, p.props.width*p.props.height)}
		err := p.spec.src.read(f.luma, id)
		f.decode = time.Since(f.captured)
		switch {
		case errors.Is(err, io.EOF):
			p.monitor.emit(severityInfo, "VIDEO_CONSUMPTION_FINISHED", contextSource, nil)
			p.monitor.transition(stateEnded)
			p.log.Info("source ended", "frames", id-1)
			return
		case err != nil:
			p.monitor.emit(severityError, "SOURCE_ERROR", contextSource,
				map[string]any{"error_type": "SourceError", "error_message": err.Error()})
			p.monitor.transition(stateError)
			p.log.Error("source failed", "frame", id, "err", err)
			return
		}
		select {
		case out <- f:
		case <-ctx.Done():
			return
		}
	}
}

// infer runs the model on every frame.
func (p *pipeline) infer(ctx context.Context, in <-chan frame, out chan<- inferred) {
	defer close(out)
	var prev []byte
	for f := range in {
		start := time.Now()
		var end func()
		if p.tracer != nil {
			end = p.tracer.Frame(ctx, f.id)
		}
		a := analyse(f.luma, prev)
		burn(ctx, f.luma, p.spec.cost)
		if end != nil {
			end()
		}
		prev = f.luma
		r := inferred{
			result: result{
				frameID: f.id, timestamp: f.captured,
				width: p.props.width, height: p.props.height, analysis: a,
			},
			decode: f.decode, inference: time.Since(start), captured: f.captured,
		}
		select {
		case out <- r:
		case <-ctx.Done():
			return
		}
	}
}

// sink puts results into the buffer and measures them; it reports the end
// of inference once the source has ended and every frame is buffered.
func (p *pipeline) sink(ctx context.Context, in <-chan inferred) {
	for r := range in {
		if p.results.put(ctx, r.result) != nil {
			return
		}
		p.monitor.record(sample{
			done: time.Now(), decode: r.decode, inference: r.inference, e2e: time.Since(r.captured),
		})
	}
	if ctx.Err() == nil {
		p.monitor.emit(severityInfo, "INFERENCE_THREAD_FINISHED", contextPipeline, nil)
	}
}

// report is the status report of a started pipeline.
func (p *pipeline) report() map[string]any {
	state, events, latency, throughput := p.monitor.snapshot(time.Now())
	s := p.spec
	return map[string]any{
		"video_source_status_updates": events,
		"latency_reports":             latency,
		"inference_throughput":        throughput,
		"sources_metadata": []any{map[string]any{
			"source_properties": map[string]any{
				"width": p.props.width, "height": p.props.height, "total_frames": p.props.total,
				"is_file": p.props.isFile, "fps": p.props.fps,
			},
			"source_reference":            s.reference,
			"buffer_size":                 s.decodingSize,
			"state":                       state,
			"buffer_filling_strategy":     s.filling,
			"buffer_consumption_strategy": s.consumption,
			"source_id":                   0,
		}},
		"state": state,
	}
}

// idleReport is the status report of a worker that has not been initialised.
func idleReport() map[string]any {
	return map[string]any{
		"video_source_status_updates": []any{},
		"latency_reports":             []any{},
		"inference_throughput":        0.0,
		"sources_metadata":            []any{},
		"state":                       stateNotStarted,
	}
}

// gate parks the source while the pipeline is muted.
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
