// Package worker is the worker program: one small video-inference pipeline
// (source -> model -> bounded result sink) driven by commands that arrive as
// frames on its stdin and are answered on its stdout. The same loop runs in
// an OS process (Main) and in goroutines (Run) for in-memory tests.
package worker

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Config wires one worker loop to its channel and its host.
type Config struct {
	// In carries WorkerCommand frames; EOF (the manager is gone) ends Run.
	In io.Reader
	// Out receives WorkerReply frames.
	Out io.Writer
	// Log is the worker's log (stderr for a process); nil discards.
	Log *slog.Logger
	// Chaos lets the worker obey fault commands.
	Chaos bool
	// Terminate delivers SIGTERM (or its in-memory equivalent); a worker
	// told ignore_sigterm drops them.
	Terminate <-chan struct{}
	// Exit ends the host at once with the given status (os.Exit for a
	// process); used by the crash fault. Nil makes Run return *ExitError.
	Exit func(code int)
	// SpawnGrandchild starts a process that escapes the worker's process
	// group; nil makes the spawn_grandchild fault fail with an error reply.
	SpawnGrandchild func() error
	// Tracer traces commands and frame processing; nil traces nothing.
	Tracer Tracer
	// StallTimeout is the frame watchdog's base timeout (scaled up for
	// slow sources); 0 turns the watchdog off. Main reads it from
	// protocol.EnvSourceStallTimeout.
	StallTimeout time.Duration
	// FFmpeg is the decoder for media other than synthetic and
	// YUV4MPEG2 sources: an executable name or path ("" is "ffmpeg" on
	// PATH). A missing one fails those sources in status, not init.
	FFmpeg string
	// DecodeWidth and DecodeHeight are the size ffmpeg scales decoded
	// frames to; 0 means protocol.DefaultDecodeSize.
	DecodeWidth, DecodeHeight int
}

// Tracer is the worker's tracing seam. The worker package knows nothing of
// any tracing library: package otel implements Tracer, and spans reach the
// pipeline only through ctx. Implementations must be safe for concurrent
// use and must not block.
type Tracer interface {
	// Command starts tracing one command, continuing the W3C traceparent
	// the manager forwarded ("" when it carries none, as health probes do;
	// an implementation may then trace nothing). It returns the ctx
	// to handle the command in and a func that ends the trace with the
	// reply; the worker calls end exactly once.
	Command(ctx context.Context, cmdType, traceparent string) (_ context.Context, end func(protocol.Response))
	// Frame starts tracing the processing of one frame within ctx (the
	// ctx the pipeline was started in) and returns the func that ends it.
	// Implementations sample: most calls should cost next to nothing.
	Frame(ctx context.Context, frameID int) (end func())
}

// ExitError is returned by Run when the worker ends with a status other than
// 0 (a crash fault without Config.Exit, or a pipeline error).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return "worker: exit status " + itoa(e.Code) }

// Run runs the worker loop until the channel closes, a terminate command or
// signal is obeyed, the consumption timeout passes, or ctx is cancelled
// (then it returns ctx.Err()). It returns nil for a clean end. A source that
// reaches its end leaves the worker serving (state ENDED). On return Run has
// stopped its pipeline and closed In and Out where they are io.Closers, as a
// process exit would.
func Run(ctx context.Context, cfg Config) error { return run(ctx, cfg) }
