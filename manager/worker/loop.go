package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// readerStopTimeout bounds how long Run waits for its reader goroutine after
// closing In: a blocking file read may not be interruptible by Close.
const readerStopTimeout = time.Second

// initSettle bounds how long init waits for its sources to open.
const initSettle = 500 * time.Millisecond

func itoa(n int) string { return strconv.Itoa(n) }

// inbound is one frame read from In, or the error that ended reading.
type inbound struct {
	body []byte
	err  error
}

// worker is the state of one Run. Only the goroutine running loop touches
// it (the pipeline has its own locks), and that goroutine is the only
// writer to Config.Out, so replies never interleave.
type worker struct {
	cfg  Config
	log  *slog.Logger
	pipe *pipeline // nil until a successful init

	faults faults
	// last is the previous reply, which stale_responses replays.
	last  *protocol.WorkerReply
	stale int

	consumeEvery time.Duration
	consumeTimer *time.Timer // nil without consumption_timeout
	crashTimer   *time.Timer // a delayed crash fault
	crashCode    int
	hangTimer    *time.Timer // ends a hang_queue with a duration
	hung         bool
}

// outcome is what handling one command decided.
type outcome struct {
	resp protocol.Response
	// plain replies skip the stale and garbage faults (the reply to the
	// chaos command that arms them).
	plain bool
	// silent ends Run without a reply (a crash).
	silent bool
	// stop ends Run after the reply; err is what Run returns.
	stop bool
	err  error
}

func answer(resp protocol.Response) outcome { return outcome{resp: resp} }

func fail(err *protocol.Error) outcome { return outcome{resp: protocol.Failure(err)} }

func run(ctx context.Context, cfg Config) error {
	if cfg.In == nil || cfg.Out == nil {
		return errors.New("worker: Config.In and Config.Out are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &worker{cfg: cfg, log: log}
	frames := make(chan inbound)
	readerDone := make(chan struct{})
	go w.read(ctx, frames, readerDone)
	defer func() {
		cancel()
		if w.pipe != nil {
			w.pipe.stop()
		}
		for _, t := range []*time.Timer{w.consumeTimer, w.crashTimer, w.hangTimer} {
			if t != nil {
				t.Stop()
			}
		}
		w.closeChannel(readerDone)
	}()
	return w.loop(ctx, frames)
}

// read owns In: it turns frames into inbound values until an error. An
// empty frame is reported and reading goes on; any other error ends it.
func (w *worker) read(ctx context.Context, out chan<- inbound, done chan<- struct{}) {
	defer close(done)
	for {
		body, err := protocol.ReadFrame(w.cfg.In, 0)
		select {
		case out <- inbound{body: body, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil && !errors.Is(err, protocol.ErrEmptyFrame) {
			return
		}
	}
}

// closeChannel closes In and Out when they can be closed, as a process exit
// closes its stdin and stdout: the manager sees EOF, and the reader
// goroutine, blocked in a read, returns and is waited for.
func (w *worker) closeChannel(readerDone <-chan struct{}) {
	inCloser, closable := w.cfg.In.(io.Closer)
	if closable {
		_ = inCloser.Close()
	}
	if c, ok := w.cfg.Out.(io.Closer); ok {
		_ = c.Close()
	}
	if !closable {
		return // the reader ends at In's next error; nothing can hurry it
	}
	select {
	case <-readerDone:
	case <-time.After(readerStopTimeout):
		w.log.Warn("command reader did not stop after closing its input")
	}
}

// loop serves commands and host events until one of them ends the worker.
func (w *worker) loop(ctx context.Context, frames <-chan inbound) error {
	for {
		commands := frames
		if w.hung {
			commands = nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.cfg.Terminate:
			if w.faults.ignoreSigterm {
				w.log.Warn("termination signal ignored (chaos ignore_sigterm)")
				continue
			}
			w.log.Info("termination signal: stopping")
			return nil
		case <-timerC(w.consumeTimer):
			w.log.Info("consumption timeout: no results consumed, stopping", "timeout", w.consumeEvery)
			return nil
		case <-timerC(w.crashTimer):
			return w.crash(w.crashCode)
		case <-timerC(w.hangTimer):
			w.log.Info("command queue resumes (chaos hang_queue over)")
			w.hung, w.hangTimer = false, nil
		case in := <-commands:
			if in.err != nil && !errors.Is(in.err, protocol.ErrEmptyFrame) {
				return w.readFailed(in.err)
			}
			if stop, err := w.handle(ctx, in); stop {
				return err
			}
		}
	}
}

// readFailed ends Run after In failed: EOF or a closed channel means the
// manager is gone (a clean end); anything else is a broken channel.
func (w *worker) readFailed(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrClosedPipe), errors.Is(err, os.ErrClosed),
		errors.Is(err, protocol.ErrTruncated):
		w.log.Info("command channel closed: stopping", "reason", err)
		return nil
	}
	w.log.Error("command channel broken", "err", err)
	return fmt.Errorf("worker: read command: %w", err)
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// handle decodes and answers one command; stop reports that Run must end
// and return err.
func (w *worker) handle(ctx context.Context, in inbound) (stop bool, err error) {
	var cmd protocol.WorkerCommand
	var out outcome
	switch {
	case in.err != nil:
		out = fail(protocol.InvalidPayload("empty command frame"))
	case json.Unmarshal(in.body, &cmd) != nil:
		out = fail(protocol.InvalidPayload("command is not a JSON worker command"))
	default:
		out = w.traced(ctx, &cmd)
	}
	if out.silent {
		return true, out.err
	}
	if err := w.reply(cmd.RequestID, out.resp, out.plain); err != nil {
		w.log.Info("cannot write reply, manager gone: stopping", "err", err)
		return true, nil
	}
	return out.stop, out.err
}

// traced runs dispatch inside the Tracer's span for the command, if any.
func (w *worker) traced(ctx context.Context, cmd *protocol.WorkerCommand) outcome {
	if w.cfg.Tracer == nil {
		return w.dispatch(ctx, cmd)
	}
	ctx, end := w.cfg.Tracer.Command(ctx, cmd.Type, cmd.Traceparent)
	out := w.dispatch(ctx, cmd)
	resp := out.resp
	if out.silent {
		resp = protocol.Failure(protocol.InternalError("worker ended without a reply"))
	}
	end(resp)
	return out
}

func (w *worker) dispatch(ctx context.Context, cmd *protocol.WorkerCommand) outcome {
	switch cmd.Type {
	case protocol.TypeInit:
		return w.init(ctx, cmd)
	case protocol.TypeStatus:
		return w.status(ctx)
	case protocol.TypeTerminate:
		if w.faults.ignoreSigterm {
			w.log.Warn("terminate command answered but ignored (chaos ignore_sigterm)")
			return answer(protocol.Success(nil))
		}
		w.log.Info("terminate command: stopping")
		return outcome{resp: protocol.Success(nil), stop: true}
	case protocol.TypeChaos:
		return w.chaos(cmd)
	case protocol.TypeConsumeResult, protocol.TypeMute, protocol.TypeResume:
		if w.pipe == nil {
			return fail(protocol.OperationError("pipeline is not initialised"))
		}
	default:
		return fail(protocol.InvalidPayload(fmt.Sprintf("unknown worker command type %q", clipText(cmd.Type))))
	}
	switch cmd.Type {
	case protocol.TypeMute:
		if refused := w.pipe.mute(); refused != "" {
			return fail(protocol.NotAllowed("MUTE", refused))
		}
		return answer(protocol.Success(nil))
	case protocol.TypeResume:
		if refused := w.pipe.resume(); refused != "" {
			return fail(protocol.NotAllowed("RESUME", refused))
		}
		return answer(protocol.Success(nil))
	}
	return w.consume(cmd)
}

// init starts the pipeline. It is refused once a pipeline runs.
func (w *worker) init(ctx context.Context, cmd *protocol.WorkerCommand) outcome {
	if d := w.faults.slowStart; d > 0 {
		w.faults.slowStart = 0
		w.log.Warn("delaying init (chaos slow_start)", "delay", d)
		if !sleep(ctx, d) {
			return outcome{silent: true, err: ctx.Err()}
		}
	}
	if w.pipe != nil {
		return fail(protocol.OperationError("pipeline is already initialised"))
	}
	s, err := parseInit(cmd.Request, w.host())
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) {
			return fail(perr)
		}
		return fail(protocol.InvalidPayload(err.Error()))
	}
	// The pipeline runs in the init command's ctx, so sampled frame spans
	// are children of the init span.
	w.pipe = startPipeline(ctx, s, w.log, w.cfg.Tracer)
	// Upstream's init returns with its sources started, so a mute right
	// after init finds them RUNNING; Corral waits as long for sources that
	// open at once (generated, files, a refused connection), but at most
	// initSettle for a camera that takes its time: init never hangs.
	select {
	case <-w.pipe.monitor.settled:
	case <-time.After(initSettle):
	case <-ctx.Done():
	}
	if s.hasConsumptionLimit {
		w.consumeEvery = s.consumptionTimeout
		w.consumeTimer = time.NewTimer(s.consumptionTimeout)
	}
	return answer(protocol.Success(nil))
}

func (w *worker) status(ctx context.Context) outcome {
	if d := w.faults.probeDelay; d > 0 {
		if !sleep(ctx, d) {
			return outcome{silent: true, err: ctx.Err()}
		}
	}
	report := idleReport()
	if w.pipe != nil {
		report = w.pipe.report()
	}
	return answer(protocol.Success(map[string]any{"report": report}))
}

// consume pops one result. A non-empty answer restarts the consumption
// timeout, as upstream counts only consumes that returned something.
func (w *worker) consume(cmd *protocol.WorkerCommand) outcome {
	var excluded []string
	if raw, ok := cmd.Request["excluded_fields"]; ok {
		if err := json.Unmarshal(raw, &excluded); err != nil {
			return fail(protocol.InvalidPayload("excluded_fields must be a list of strings"))
		}
	}
	outputs, metadata := []any{}, []any{}
	if b, ok := w.pipe.results.pop(); ok {
		for _, r := range b {
			outputs = append(outputs, r.output(excluded))
			metadata = append(metadata, r.metadata())
		}
		if w.consumeTimer != nil {
			w.consumeTimer.Reset(w.consumeEvery)
		}
	}
	return answer(protocol.Success(map[string]any{"outputs": outputs, "frames_metadata": metadata}))
}

// host is the worker's settings for pipelines, from its Config.
func (w *worker) host() hostSettings {
	dec := decoding{ffmpeg: w.cfg.FFmpeg, width: w.cfg.DecodeWidth, height: w.cfg.DecodeHeight}
	if dec.width <= 0 || dec.height <= 0 {
		dec.width, dec.height, _ = protocol.ParseDecodeSize("")
	}
	return hostSettings{decoding: dec, stallTimeout: w.cfg.StallTimeout}
}

// reply writes one reply frame, preceded by whatever the armed faults add.
func (w *worker) reply(id string, resp protocol.Response, plain bool) error {
	if !plain && w.faults.garbage {
		if err := protocol.WriteFrame(w.cfg.Out, []byte(garbageBody)); err != nil {
			return err
		}
	}
	if !plain && w.faults.stale {
		old := protocol.WorkerReply{RequestID: "stale-" + itoa(w.stale), Response: protocol.Success(nil)}
		w.stale++
		if w.last != nil && w.last.RequestID != "" && w.last.RequestID != id {
			old = *w.last
		}
		if err := w.write(old); err != nil {
			return err
		}
	}
	rep := protocol.WorkerReply{RequestID: id, Response: resp}
	if err := w.write(rep); err != nil {
		return err
	}
	w.last = &rep
	return nil
}

func (w *worker) write(rep protocol.WorkerReply) error {
	body, err := json.Marshal(rep)
	if err != nil {
		// Only a bug can get here; the manager still gets one answer.
		w.log.Error("cannot encode reply", "err", err)
		rep.Response = protocol.Failure(protocol.InternalError("worker cannot encode its reply"))
		body, _ = json.Marshal(rep)
	}
	return protocol.WriteFrame(w.cfg.Out, body)
}

// sleep waits for d or ctx; false means ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
